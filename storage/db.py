"""Opening the store.

SQLite (the default) is a file created 0600 in a 0700 directory, in WAL mode with a 30 s busy timeout, foreign keys
on, and write transactions that take the write lock up front (BEGIN IMMEDIATE) so two writers queue instead of
deadlocking on a lock upgrade. A file that is not a SQLite database is refused and left untouched. A `postgresql://`
URL (playhouse.db_url) works the same way; there a write transaction takes an advisory lock so the lease and the
outbox behave as on SQLite.
"""
import contextlib
import os
import sqlite3
import threading
from pathlib import Path

import peewee
from playhouse.db_url import connect

from storage import migrations
from storage.models import MODELS, database

SQLITE_HEADER = b"SQLite format 3\x00"
BUSY_TIMEOUT_S = 30
QUICK_CHECK_MAX_BYTES = 64 * 1024 * 1024   # quick_check reads the whole file: about 0.1 s for 16 MB here


class StoreError(Exception):
    """The store cannot be opened or used; the message is one line for the operator."""


def _prepare_sqlite_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.exists():
        if path.is_dir():
            raise StoreError(f"{path} is a directory, not a database file")
        with open(path, "rb") as f:
            head = f.read(16)
        if head and head != SQLITE_HEADER:
            raise StoreError(f"{path} is not a SQLite database; refusing to open it (file left untouched)")
        if head:
            _check_existing_sqlite(path)
        return
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    os.close(fd)


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
        if path.stat().st_size <= QUICK_CHECK_MAX_BYTES:
            result = con.execute("PRAGMA quick_check(1)").fetchone()
            if not result or result[0] != "ok":
                raise StoreError(f"{path} is damaged ({result[0] if result else 'no answer'}); "
                                 f"file left untouched: restore it from a backup")
    except sqlite3.DatabaseError as e:
        raise StoreError(f"{path} is not a usable SQLite database ({e}); file left untouched") from e
    finally:
        con.close()


class Store:
    def __init__(self, db: peewee.Database, url: str):
        self.db = db
        self.url = url
        self.is_sqlite = isinstance(db, peewee.SqliteDatabase)
        self._pg_lock = threading.Lock()

    @contextlib.contextmanager
    def write(self):
        """A write transaction: BEGIN IMMEDIATE on SQLite, an advisory transaction lock on PostgreSQL."""
        try:
            if self.is_sqlite:
                with self.db.atomic("IMMEDIATE"):
                    yield
            else:
                with self.db.atomic():
                    self.db.execute_sql("SELECT pg_advisory_xact_lock(7157)")
                    yield
        except peewee.OperationalError as e:
            raise StoreError(f"store write failed: {e}") from e
        except peewee.DatabaseError as e:
            if type(e) is peewee.DatabaseError:  # SQLite's "database disk image is malformed": a damaged file
                raise StoreError(f"store write failed: the store is damaged ({e})") from e
            raise

    def read(self):
        return self.db.connection_context() if not self.db.is_closed() else contextlib.nullcontext()

    def close(self):
        if not self.db.is_closed():
            self.db.close()

    def meta(self, key: str, default: str | None = None) -> str | None:
        from storage.models import Meta
        row = Meta.get_or_none(Meta.key == key)
        return row.value if row else default


def open_store(db: str | os.PathLike, migrate: bool = True) -> Store:
    """Open (and create/migrate) the store at a file path or URL and bind the models to it."""
    url = str(db)
    if "://" in url and not url.startswith("sqlite"):
        try:
            # peewee runs in autocommit mode outside `atomic()`; a server that does not answer fails in 10 s unless
            # the URL says otherwise (?connect_timeout=N)
            params = {} if "connect_timeout=" in url else {"connect_timeout": 10}
            database_obj = connect(url, **params)
            database_obj.connect()
        except Exception as e:  # driver errors differ per backend; the operator needs one line
            raise StoreError(f"cannot connect to {_redact(url)}: {str(e).strip().splitlines()[0]}") from e
    else:
        path = Path(url.removeprefix("sqlite:///")).expanduser()
        _prepare_sqlite_file(path)
        database_obj = peewee.SqliteDatabase(
            str(path), timeout=BUSY_TIMEOUT_S, check_same_thread=False,
            pragmas={"journal_mode": "wal", "busy_timeout": BUSY_TIMEOUT_S * 1000, "foreign_keys": 1,
                     "synchronous": "normal"})
        try:
            database_obj.connect()
            database_obj.execute_sql("PRAGMA schema_version").fetchone()
        except (peewee.DatabaseError, sqlite3.DatabaseError) as e:
            database_obj.close()
            raise StoreError(f"{path} is not a usable SQLite database ({e}); file left untouched") from e
        url = str(path)
    database.initialize(database_obj)
    store = Store(database_obj, url)
    if migrate:
        try:
            migrations.migrate(store)
        except peewee.DatabaseError as e:
            raise StoreError(f"cannot prepare the store at {_redact(url)}: {e}") from e
    return store


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


__all__ = ["Store", "StoreError", "open_store", "MODELS"]
