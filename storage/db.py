"""Opening the store.

SQLite (the default) is a file created 0600 in a 0700 directory, in WAL mode with a 30 s busy timeout, foreign keys
on, and write transactions that take the write lock up front (BEGIN IMMEDIATE) so two writers queue instead of
deadlocking on a lock upgrade. A file that is not a SQLite database, or a SQLite database that is not ours, is refused
and left untouched. A store file (0600) or data dir (0700) that already exists with group/other access is tightened with
a warning, and refused when another user owns it, as ssh and PostgreSQL do. A `postgresql://` URL (playhouse.db_url)
works the same way; there a write transaction takes an advisory lock so the lease and the outbox behave as on SQLite.

A PostgreSQL server that restarts (or a network that drops) closes every connection. Each thread's connection is then
re-opened at its next statement outside a transaction (a read, or the BEGIN of the next write), and that statement is
retried once: nothing of it had run. A statement inside a transaction is never replayed (the transaction's earlier
statements are gone with the connection): that transaction fails with `StoreUnavailable` ("store unreachable: ...")
and the next one starts on a new connection. While the server does not answer, every attempt fails the same way; the
callers (the lease loop, the scheduler's jobs, the console's poller) try again at their next tick.
"""
import contextlib
import logging
import os
import sqlite3
import threading
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlencode, urlparse, urlsplit, urlunsplit

import peewee

from storage import is_server_url, migrations
from storage.errors import StoreError, StoreUnavailable  # noqa: F401 (storage.db.StoreError is public)
from storage.models import MODELS, database
from storage.sqlite_file import (  # noqa: F401 (public here too)
    BUSY_TIMEOUT_S,
    QUICK_CHECK_MAX_BYTES,
    SQLITE_HEADER,
    make_private,
    prepare_sqlite_file,
    private_dir,
)

log = logging.getLogger(__name__)


IDLE_TX_TIMEOUT_S = 10    # a write transaction never waits on anything outside the store that long

# psycopg2's words for a connection the server (or the network) has closed, or a server that does not answer
DROPPED = ("connection already closed", "server closed the connection", "terminating connection",
           "connection to server", "could not connect to server", "no connection to the server",
           "could not receive data from server", "could not send data to server", "ssl connection has been closed",
           "the database system is shutting down", "the database system is starting up", "connection not open")


# the server answered, and said no: a setting to fix, not an outage to wait out
REFUSED = ("authentication failed", "no pg_hba.conf entry", "does not exist", "permission denied", "ssl is not")


def is_dropped(error: BaseException) -> bool:
    """Whether a driver error means the connection is gone or the server does not answer (as opposed to a bad
    statement, a conflict, or a server that refuses our credentials)."""
    if not isinstance(error, (peewee.OperationalError, peewee.InterfaceError)):
        return False
    text = str(error).lower()
    return any(mark in text for mark in DROPPED) and not any(mark in text for mark in REFUSED)


def unreachable(error: BaseException) -> StoreUnavailable:
    if isinstance(error, StoreUnavailable):
        return error
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return StoreUnavailable(f"store unreachable: {first}")


# a write transaction on PostgreSQL holds this advisory lock until it ends: writers queue as on SQLite
PG_WRITE_LOCK = "SELECT pg_advisory_xact_lock(7157)"


class ReconnectOnDrop:
    """Mixed into the PostgreSQL database class: a dropped connection is re-opened and the statement retried once,
    but only outside a transaction (see the module docstring)."""

    def execute_sql(self, sql, params=None):
        return self._again(super().execute_sql, sql, params)

    def begin(self, *args, write: bool = False, **kwargs):
        if write:
            return self._again(self._begin_write)
        return self._again(super().begin, *args, **kwargs)

    def _begin_write(self) -> None:
        """BEGIN and the write lock in one round trip (a status move is ~6 of them on PostgreSQL)."""
        with peewee.__exception_wrapper__:
            self.cursor().execute(f"BEGIN; {PG_WRITE_LOCK}")

    def rollback(self):
        try:
            super().rollback()
        except (peewee.OperationalError, peewee.InterfaceError) as e:
            if not is_dropped(e):
                raise
            # the server dropped the transaction with the connection: nothing to roll back; the error that ended
            # the transaction is the one the caller sees

    def _again(self, func, *args, **kwargs):
        was_open = not self._state.closed
        try:
            return func(*args, **kwargs)
        except (peewee.OperationalError, peewee.InterfaceError) as e:
            if not is_dropped(e) or self.in_transaction():
                raise
            self._drop_connection()
            if not was_open:  # a new connection failed: the server does not answer; no second wait
                raise unreachable(e) from e
            log.warning("store connection dropped (%s); reconnecting", str(e).strip().splitlines()[0])
        try:
            return func(*args, **kwargs)
        except (peewee.OperationalError, peewee.InterfaceError) as e:
            if not is_dropped(e):
                raise
            self._drop_connection()
            raise unreachable(e) from e

    def _initialize_connection(self, conn):
        super()._initialize_connection(conn)
        # a client cut off mid-transaction (a machine whose link went down) would otherwise keep its session, and
        # the advisory write lock with it, until TCP gives up (hours): the server ends such a session after
        # IDLE_TX_TIMEOUT_S, so the other machines' engines can write (and take the lease over) again
        with conn.cursor() as cur:
            cur.execute(f"SET idle_in_transaction_session_timeout = '{IDLE_TX_TIMEOUT_S}s'")

    def _drop_connection(self) -> None:
        """Forget this thread's dead connection; peewee opens a new one at the next statement."""
        conn = self._state.conn
        self._state.reset()
        with contextlib.suppress(Exception):
            if conn is not None:
                conn.close()


def _database_for_url(url: str, **params) -> peewee.Database:
    """playhouse.db_url's database for the URL; a PostgreSQL one reconnects after its server dropped it."""
    from playhouse import db_url  # loads every backend's extension: only a URL store needs it
    from playhouse.db_url import connect
    parsed = urlsplit(url)
    cls = db_url.schemes.get(parsed.scheme)
    if cls is not None and issubclass(cls, peewee.PostgresqlDatabase):
        if not issubclass(cls, ReconnectOnDrop):
            cls = type(f"Reconnecting{cls.__name__}", (ReconnectOnDrop, cls), {})
        kwargs = db_url.parseresult_to_dict(urlparse(url))
        kwargs.update(params)
        if not kwargs.get("database"):
            return connect(url, **params)  # its own message for a URL without a database name
        return cls(**kwargs)
    return connect(url, **params)


class Store:
    def __init__(self, db: peewee.Database, url: str, warnings: list[str] | None = None):
        self.db = db
        self.url = url
        self.warnings = warnings or []  # one line each, for the operator (modes tightened when opening)
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
                nested = self.db.in_transaction() or not isinstance(self.db, ReconnectOnDrop)
                with self.db.atomic() if nested else self.db.atomic(write=True):
                    if nested:  # a savepoint (or a plain database class): the lock is a statement of its own
                        self.db.execute_sql(PG_WRITE_LOCK)
                    yield
        except StoreUnavailable:
            raise
        except (peewee.OperationalError, peewee.InterfaceError) as e:
            if is_dropped(e):
                raise unreachable(e) from e
            raise StoreError(f"store write failed: {e}") from e
        except peewee.DatabaseError as e:
            if type(e) is peewee.DatabaseError:  # SQLite's "database disk image is malformed": a damaged file
                raise StoreError(f"store write failed: the store is damaged ({e})") from e
            raise

    def close(self):
        if not self.db.is_closed():
            self.db.close()

    def meta(self, key: str, default: str | None = None) -> str | None:
        from storage.models import Meta
        row = Meta.get_or_none(Meta.key == key)
        return row.value if row else default


def open_store(db: str | os.PathLike, migrate: bool = True, read_only: bool = False) -> Store:
    """Open (and create/migrate) the store at a file path or URL and bind the models to it. With read_only an
    existing store is opened so that nothing can write to it (SQLite: PRAGMA query_only; PostgreSQL: the session's
    default_transaction_read_only): a read-only run leaves it as it was; a missing store is not created and one that
    needs an upgrade is refused."""
    url = str(db)
    warnings: list[str] = []
    guard = False
    if is_server_url(url):
        try:
            # peewee runs in autocommit mode outside `atomic()`; a server that does not answer fails in 10 s unless
            # the URL says otherwise (?connect_timeout=N)
            params = {} if "connect_timeout=" in url else {"connect_timeout": 10}
            if "keepalives" not in url:  # a server that vanished (its machine, the link) is noticed in ~15 s
                params.update(keepalives=1, keepalives_idle=5, keepalives_interval=3, keepalives_count=3)
            if read_only and url.startswith("postgres"):
                # the server refuses every write of this session (as SQLite's query_only does), whatever the code
                params["options"] = "-c default_transaction_read_only=on"
                guard = True
            database_obj = _database_for_url(url, **params)
            database_obj.connect()
        except Exception as e:  # driver errors differ per backend; the operator needs one line
            reason = _redact_text(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__, url)
            error = StoreUnavailable if is_dropped(e) else StoreError
            raise error(f"{'store unreachable: ' if error is StoreUnavailable else ''}cannot connect to "
                        f"{redact_url(url)}: {reason}") from e
    else:
        path = Path(url.removeprefix("sqlite:///")).expanduser()
        if read_only and not (path.is_file() and path.stat().st_size > 0):
            raise StoreError(f"no store at {path}: --read-only creates nothing (run a command without it once)")
        guard = read_only
        warnings = prepare_sqlite_file(path)
        # journal_mode=wal changes nothing in a store that is already WAL (every store this program created)
        pragmas = {"journal_mode": "wal", "busy_timeout": BUSY_TIMEOUT_S * 1000, "foreign_keys": 1,
                   "synchronous": "normal", **({"query_only": 1} if guard else {})}
        database_obj = peewee.SqliteDatabase(str(path), timeout=BUSY_TIMEOUT_S, check_same_thread=False,
                                             pragmas=pragmas)
        try:
            database_obj.connect()
            database_obj.execute_sql("PRAGMA schema_version").fetchone()
        except (peewee.DatabaseError, sqlite3.DatabaseError) as e:
            database_obj.close()
            raise StoreError(f"{path} is not a usable SQLite database ({e}); file left untouched") from e
        url = str(path)
    database.initialize(database_obj)
    store = Store(database_obj, url, warnings)
    if guard and migrations.current_version(store) == 0:
        store.close()
        raise StoreError(f"no store in {redact_url(url)}: --read-only creates nothing (run a command without it "
                         f"once)")
    if guard and migrations.current_version(store) != migrations.LATEST:
        store.close()
        raise StoreError(f"the store at {url} needs an upgrade, which --read-only does not allow: run a command "
                         f"without it once")
    if migrate and not guard:
        try:
            migrations.migrate(store)
        except peewee.DatabaseError as e:
            raise StoreError(f"cannot prepare the store at {redact_url(url)}: {_redact_text(str(e), url)}") from e
    return store


SECRET_PARAMS = {"password", "passwd", "pass", "sslpassword", "sslkey", "passfile"}


def redact_url(url: str) -> str:
    """A store URL as it may be printed: user info (the part before the host's `@`, which may itself hold `@`) and
    every password-like query parameter become ***."""
    if "://" not in url:
        return url
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if k.lower() in SECRET_PARAMS else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _secrets(url: str) -> list[str]:
    parts = urlsplit(url) if "://" in url else None
    if parts is None:
        return []
    raw = parts.netloc.rpartition("@")[0].partition(":")[2] if "@" in parts.netloc else ""
    found = [raw, unquote(raw)]
    found += [v for k, v in parse_qsl(parts.query, keep_blank_values=True) if k.lower() in SECRET_PARAMS]
    return [s for s in found if s]


def _redact_text(text: str, url: str) -> str:
    """A driver's message with the URL's secrets taken out (drivers may echo the DSN they were given)."""
    text = text.replace(url, redact_url(url))
    for secret in sorted(set(_secrets(url)), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


__all__ = ["Store", "StoreError", "StoreUnavailable", "is_dropped", "open_store", "private_dir", "make_private",
           "redact_url", "MODELS"]
