"""A SQLite store file before any database library opens it: the data dir and the file are ours and private (0700 /
0600, tightened with a warning, refused when another user owns them), the file is a SQLite database of ours and not
damaged. Standard library only: storage/db.py runs these checks before peewee opens the file, and the CLI's quick
read path (console/quick.py) runs the same ones before it reads the file with sqlite3."""
import os
import sqlite3
import stat
from pathlib import Path

from storage import StoreError

SQLITE_HEADER = b"SQLite format 3\x00"
BUSY_TIMEOUT_S = 30
QUICK_CHECK_MAX_BYTES = 64 * 1024 * 1024   # quick_check reads the whole file: about 0.1 s for 16 MB here


def make_private(path: Path, mode: int, what: str) -> str | None:
    """An existing file or directory of ours that group or others can reach is tightened to `mode`; one that another
    user owns is refused (we would hand our secrets to it, or take over its files). Returns the warning when the mode
    changed (it is also logged), else None."""
    st = path.stat()
    if st.st_uid != os.getuid():
        raise StoreError(f"{what} {path} is owned by uid {st.st_uid}, not by this user (uid {os.getuid()}); "
                         f"refusing to use it: chown it or point to your own")
    if stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX:
        raise StoreError(f"{what} {path} is a shared directory (sticky bit); use a private directory")
    old = stat.S_IMODE(st.st_mode)
    if not old & 0o077:
        return None
    os.chmod(path, mode)
    warning = f"{what} {path} was mode {old:04o} (group/other access); tightened to {mode:04o}"
    import logging  # here: only a tightened mode is logged
    logging.getLogger("storage.db").warning(warning)
    return warning


def is_private(path: Path) -> bool:
    """Whether make_private would leave `path` as it is, without a word: ours, not a shared directory, no group or
    other access."""
    st = path.stat()
    return (st.st_uid == os.getuid() and not (stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX)
            and not st.st_mode & 0o077)


def private_dir(path: Path, what: str = "data dir") -> str | None:
    """Create the directory 0700, or tighten an existing one (see make_private)."""
    try:
        path.mkdir(parents=True, mode=0o700)
        return None
    except FileExistsError:
        if not path.is_dir():
            raise StoreError(f"{what} {path} exists and is not a directory") from None
        return make_private(path, 0o700, what)


def prepare_sqlite_file(path: Path) -> list[str]:
    """Create the store file 0600, or check an existing one; returns the warnings (modes tightened)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.exists():
        if path.is_dir():
            raise StoreError(f"{path} is a directory, not a database file")
        warnings = [w for w in (make_private(path, 0o600, "store file"),) if w]
        for side in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            if side.exists():  # SQLite gives them the database's mode: they hold the same data
                warnings += [w for w in (make_private(side, 0o600, "store file"),) if w]
        with open(path, "rb") as f:
            head = f.read(16)
        if head and head != SQLITE_HEADER:
            raise StoreError(f"{path} is not a SQLite database; refusing to open it (file left untouched)")
        if head:
            _check_existing_sqlite(path)
        return warnings
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    os.close(fd)
    return []


def _check_existing_sqlite(path: Path) -> None:
    """Before peewee opens an existing file (and sets WAL, which rewrites the header of a rollback-journal
    database): read it with a plain connection that changes nothing. A SQLite file of another program (tables, but
    not ours) is refused, and so is a damaged one (quick_check, on files up to QUICK_CHECK_MAX_BYTES; larger stores
    skip it and rely on SQLite reporting the damage when a query meets it)."""
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True, timeout=BUSY_TIMEOUT_S)
    except sqlite3.Error as e:
        raise StoreError(f"{path} cannot be opened: {e}; file left untouched") from e
    try:
        tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables and "meta" not in tables:
            raise StoreError(f"{path} is a SQLite database of another program (no deployer-console tables); "
                             f"refusing to change it (file left untouched)")
        if tables and not _has_store_id(con):
            # our first migration creates `meta` and writes the store id in one transaction: a `meta` without it
            # is another program's table of the same name
            raise StoreError(f"{path} is a SQLite database of another program (a meta table without a "
                             f"deployer-console store id); refusing to change it (file left untouched)")
        if path.stat().st_size <= QUICK_CHECK_MAX_BYTES:
            result = con.execute("PRAGMA quick_check(1)").fetchone()
            if not result or result[0] != "ok":
                raise StoreError(f"{path} is damaged ({result[0] if result else 'no answer'}); "
                                 f"file left untouched: restore it from a backup")
    except sqlite3.DatabaseError as e:
        raise StoreError(f"{path} is not a usable SQLite database ({e}); file left untouched") from e
    finally:
        con.close()


def _has_store_id(con: sqlite3.Connection) -> bool:
    try:
        return con.execute("SELECT 1 FROM meta WHERE key = 'store_id' AND value IS NOT NULL").fetchone() is not None
    except sqlite3.OperationalError:  # a `meta` table without our columns
        return False
