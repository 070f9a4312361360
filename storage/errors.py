"""The store's error types, imported by db.py and migrations.py alike (neither imports the other for them)."""
import peewee

from storage import StoreError  # defined with no import of peewee: storage/sqlite_file.py raises it too


class StoreUnavailable(StoreError, peewee.OperationalError):
    """The store's server does not answer (its connection dropped and could not be re-opened). Exit code 4 in the CLI.
    Also a peewee OperationalError, so code that handles a failed statement handles this one too."""
    exit_code = 4
