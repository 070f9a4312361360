"""Where things live under the data directory. Every path is built from validated names and checked to stay inside
the data directory; directories are created 0700."""
import os
from pathlib import Path

from console.engine.errors import InputError


class Paths:
    def __init__(self, data_dir: Path):
        self.data = Path(data_dir).resolve()

    def _inside(self, *parts: str) -> Path:
        path = self.data.joinpath(*parts)
        if not path.resolve().is_relative_to(self.data) and not path.is_symlink():
            raise InputError(f"path {path} would leave the data directory")
        return path

    def ensure(self, path: Path) -> Path:
        return private_dir(path)

    def release(self, deployment_id: str) -> Path:
        return self._inside("releases", deployment_id)

    def service(self, service: str) -> Path:
        return self._inside("services", service)

    def current(self, service: str) -> Path:
        return self.service(service) / "current"

    def previous(self, service: str) -> Path:
        return self.service(service) / "previous"

    def route(self, service: str) -> Path:
        return self._inside("routes", f"{service}.yml")

    def archive(self, deployment_id: str) -> Path:
        return self._inside("archive", deployment_id)

    def archive_root(self) -> Path:
        return self._inside("archive")


def atomic_symlink(link: Path, target: str) -> None:
    tmp = link.with_name(f".{link.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, link)


def private_dir(path: Path) -> Path:
    """mkdir -p where every directory it creates is 0700 (Path.mkdir gives missing parents the default mode)."""
    path = Path(path)
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=0o700)
        except FileExistsError:
            pass
    return missing[0] if missing else path


def atomic_write(path: Path, text: str) -> None:
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def link_target(link: Path) -> str | None:
    """The release id a `current`/`previous` link points at, or None."""
    try:
        return Path(os.readlink(link)).name
    except OSError:
        return None
