"""The archive (`<data>/archive/<deployment id>/`): container logs (`*.log.gz`) and volume backups (`*.tar.gz`), its
size budget and its retention. One place decides what may be pruned and whether a new backup fits.

A volume backup may be the only copy left of a volume that is gone, so it is kept at least `backup_keep_days`
whatever the size budget says. Over `archive_max_mb` the budget prunes container logs first, oldest first, then
backups past that age, oldest first; never a younger backup. `archive_max_age_days` prunes logs by age, and backups
once they are past `backup_keep_days` too. Since young backups are never pruned, a new backup is written only into
the room they leave in the budget (and on the disk): past it the backup is abandoned and its volume kept.

A backup being written is a `.part` file: never counted as a backup, renamed only once complete. One left by a
process that died mid-write is removed by retention once it is a day old.
"""
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from console.engine import labels as L
from console.engine.docker_gateway import BackupTooLarge
from console.engine.errors import Cancelled

LOG = ".log.gz"
BACKUP = ".tar.gz"
PART = ".part"
MB = 1024 * 1024
DAY = 86400.0
STALE_PART_S = DAY
# Backups run one at a time in a process: the room left for one is only known once the one before it has landed.
_one_backup = threading.Lock()


class DoesNotFit(Exception):
    """A volume backup that the archive budget (or the disk) has no room for: the volume stays."""


@dataclass
class Entry:
    path: Path
    size: int
    mtime: float

    @property
    def kind(self) -> str:
        name = self.path.name
        return "part" if name.endswith(PART) else "backup" if name.endswith(BACKUP) else \
            "log" if name.endswith(LOG) else "other"


class Archive:
    def __init__(self, root: Path, settings):
        self.root = Path(root)
        self.settings = settings

    def entries(self) -> list[Entry]:
        out = []
        if not self.root.exists():
            return out
        for path in self.root.rglob("*"):
            try:
                st = path.lstat()
            except FileNotFoundError:  # a part renamed or a file pruned meanwhile
                continue
            if path.is_file() and not path.is_symlink():
                out.append(Entry(path, st.st_size, st.st_mtime))
        return out

    def _young(self, entry: Entry, t: float) -> bool:
        return t - entry.mtime < float(self.settings.cleanup.backup_keep_days) * DAY

    def room(self) -> int:
        """Bytes a new backup may take: the budget minus what it can never prune (young backups, parts being
        written), and never more than the disk has free."""
        t = time.time()
        fixed = sum(e.size for e in self.entries()
                    if (e.kind == "backup" and self._young(e, t)) or (e.kind == "part" and t - e.mtime < STALE_PART_S))
        budget = int(float(self.settings.cleanup.archive_max_mb) * MB) - fixed
        free = shutil.disk_usage(self.root if self.root.exists() else self.root.parent).free
        return max(0, min(budget, free))

    def prune(self) -> list[tuple[Path, str]]:
        """Apply retention; returns (file, why) for each file removed."""
        s = self.settings.cleanup
        t = time.time()
        entries = sorted(self.entries(), key=lambda e: e.mtime)
        max_age = float(s.archive_max_age_days) * DAY
        pruned: list[tuple[Path, str]] = []
        left = []
        for e in entries:
            old = t - e.mtime > max_age
            if e.kind == "log" and old or e.kind == "backup" and old and not self._young(e, t):
                pruned.append((e.path, f"older than {s.archive_max_age_days:g} days"))
            elif e.kind == "part" and t - e.mtime > STALE_PART_S:
                pruned.append((e.path, "an unfinished write left by a process that stopped"))
            else:
                left.append(e)
        total = sum(e.size for e in left)
        limit = float(s.archive_max_mb) * MB
        over = f"archive over {s.archive_max_mb:g} MB"
        # logs first, then backups past backup_keep_days, each oldest first; never a younger backup
        prunable = [e for e in left if e.kind == "log"] + \
            [e for e in left if e.kind == "backup" and not self._young(e, t)]
        for e in prunable:
            if total <= limit:
                break
            pruned.append((e.path, over))
            total -= e.size
        for path, _ in pruned:
            path.unlink(missing_ok=True)
            try:
                path.parent.rmdir()  # a deployment's folder goes with its last file
            except OSError:
                pass
        return pruned

    def backup_volume(self, gw, volume: dict, folder: Path, should_stop=None) -> int:
        """Back up one of our volumes (a Docker volume summary) to `<folder>/<name>.tar.gz` in the room left for it.
        Returns its size; raises DoesNotFit when there is no room, Cancelled when `should_stop()` turns true."""
        name, labels = volume["Name"], volume.get("Labels") or {}
        while not _one_backup.acquire(timeout=0.2):
            if should_stop is not None and should_stop():
                raise Cancelled(f"backup of volume {name} not started")
        try:
            room = self.room()
            if room <= 0:
                raise DoesNotFit(self._no_room(name, room))
            try:
                return gw.backup_volume(name, folder / f"{name}{BACKUP}", labels=L.backup_helper_labels(labels),
                                        should_stop=should_stop, max_bytes=room)
            except BackupTooLarge:
                raise DoesNotFit(self._no_room(name, room)) from None
        finally:
            _one_backup.release()

    def _no_room(self, name: str, room: int) -> str:
        s = self.settings.cleanup
        return (f"the backup of volume {name} does not fit in the archive ({room / MB:.1f} MB left of "
                f"archive_max_mb={s.archive_max_mb:g} after the backups younger than backup_keep_days="
                f"{s.backup_keep_days:g}, or on the disk); the volume is kept until there is room")

