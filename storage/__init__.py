"""The store: Peewee models, opening (pragmas, migrations) and the queries the engine and the faces share."""
import sys

# the database drivers peewee imports, when it finds them, at its own import (psycopg2 alone loads libpq and OpenSSL)
# the schema this program writes (storage/migrations.py has a step to every version up to it); here, not in
# migrations.py, so that the CLI's quick read path can tell an up-to-date store without importing peewee
SCHEMA_VERSION = 7


class StoreError(Exception):
    """The store cannot be opened or used; the message is one line for the operator (storage/errors.py has the
    others)."""


OTHER_DRIVERS = ("psycopg2", "psycopg2cffi", "psycopg", "pymysql", "MySQLdb", "pysqlite3")


def is_server_url(url: str) -> bool:
    """Whether the store is a database server's URL (postgresql://...) rather than a SQLite file path."""
    return "://" in url and not url.startswith("sqlite")


def sqlite_only(url: str) -> None:
    """Called by a process that opens only this store, before anything imports peewee: for a SQLite file, peewee
    is kept from importing the drivers of other databases (marked absent in sys.modules, which makes their import
    fail at once, as it would if they were not installed). A process that loaded peewee already is left as it is."""
    if is_server_url(url) or "peewee" in sys.modules:
        return
    for name in OTHER_DRIVERS:
        sys.modules.setdefault(name, None)
