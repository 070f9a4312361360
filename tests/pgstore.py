"""PostgreSQL for the test suite: when DEPLOYER_TEST_DB is set (`make test-pg`, a URL printed by
`scripts/test-postgres url`), every store a test opens through `make_settings` is a fresh database of its own on that
server, created on first use and dropped (WITH (FORCE), so leftover connections do not block it) when the test ends.
"""
import itertools
import os
import threading
from urllib.parse import urlparse, urlunparse

BASE = os.environ.get("DEPLOYER_TEST_DB") or None
_counter = itertools.count(1)
_lock = threading.Lock()
_by_key: dict[str, str] = {}


def enabled() -> bool:
    return BASE is not None


def _name(url: str) -> str:
    return urlparse(url).path.lstrip("/")


def _with_db(url: str, name: str) -> str:
    return urlunparse(urlparse(url)._replace(path="/" + name))


def admin():
    """An autocommit psycopg2 connection to the run's base database (CREATE/DROP DATABASE cannot run in a tx)."""
    import psycopg2
    conn = psycopg2.connect(BASE, connect_timeout=10)
    conn.autocommit = True
    return conn


def create_database(tag: str = "t") -> str:
    """A new empty database on the test server; returns its URL."""
    name = f"{_name(BASE)}_{tag}{next(_counter)}"[:63]
    conn = admin()
    try:
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()
    return _with_db(BASE, name)


def drop_database(url: str) -> None:
    conn = admin()
    try:
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{_name(url)}" WITH (FORCE)')
    finally:
        conn.close()


def database_for(key: str) -> str:
    """The database of one store (keyed by its data directory) for the current test: created on first use."""
    with _lock:
        url = _by_key.get(key)
        if url is None:
            url = _by_key[key] = create_database()
        return url


def drop_all() -> None:
    """Drop every database the current test created."""
    with _lock:
        urls = list(_by_key.values())
        _by_key.clear()
    for url in urls:
        try:
            drop_database(url)
        except Exception:  # a drop that fails leaves a database in a throwaway cluster; never fail a test for it
            pass
