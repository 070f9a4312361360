"""Errors an operator sees: each message is one line saying what failed and what to do.

Exit codes: 1 other, 2 input, 3 a Docker engine unreachable, 4 the store unreachable (`StoreUnavailable`, defined
next to the store in storage/db.py: a PostgreSQL server that does not answer or dropped the connection).
"""
STORE_UNREACHABLE_EXIT = 4   # StoreUnavailable.exit_code (a test holds them equal): this module imports no store,
# so reading the config (which raises InputError) does not load peewee and its drivers


class DeployerError(Exception):
    exit_code = 1


class InputError(DeployerError):
    """Bad input or an illegal request (unknown id, illegal move, bad path): exit code 2."""
    exit_code = 2


class ReadOnlyError(InputError):
    pass


class EngineUnavailable(DeployerError):
    """A Docker engine did not answer."""
    exit_code = 3


class Cancelled(Exception):
    """Raised inside a pipeline when its deployment was cancelled."""


class ForeignContainer(DeployerError):
    """A container with the name we expect is not the deployment's we expect (another store's, no labels, a
    look-alike): it is reported, and nothing is done to it."""


def one_line(e: BaseException, limit: int = 300) -> str:
    """An error as the operator sees it: its first line (at most `limit` characters), or its type when it says
    nothing."""
    text = str(e).strip()
    return text.splitlines()[0][:limit] if text else type(e).__name__
