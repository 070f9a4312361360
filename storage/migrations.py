"""Schema version and forward migrations (playhouse.migrate). Version 1 is the first schema.

To change the schema: bump LATEST and add a function `_to_N(migrator)` below; it runs once, in order, inside a
write transaction, and the version in Meta moves with it.
"""
from peewee import CharField, DoubleField, IntegerField, TextField

from storage.errors import StoreError
from storage.models import MODELS, JSONField, Meta

LATEST = 5


def run_migrations(*operations) -> None:
    # playhouse.migrate loads every backend's extension: imported only when a step runs, not at every store opening
    from playhouse.migrate import migrate
    migrate(*operations)


def _migrator(store):
    from playhouse.migrate import PostgresqlMigrator, SqliteMigrator
    return SqliteMigrator(store.db) if store.is_sqlite else PostgresqlMigrator(store.db)


def _rollback_owner(store, m) -> None:
    """A rollback has an owner and a heartbeat like a deployment, so one whose process died can be recovered."""
    run_migrations(m.add_column("rollback", "owner", CharField(null=True)),
                   m.add_column("rollback", "owner_machine", CharField(null=True)),
                   m.add_column("rollback", "owner_pid", IntegerField(null=True)),
                   m.add_column("rollback", "heartbeat_at", DoubleField(null=True)))


STEPS: dict[int, callable] = {
    # why a queued deployment waits (another deployment of its service is deploying); NULL when it does not
    2: lambda store, m: run_migrations(m.add_column("deployment", "wait_reason", TextField(null=True))),
    3: _rollback_owner,
    # an event's structured detail (an audit record's action, target and outcome); older rows keep NULL
    4: lambda store, m: run_migrations(m.add_column("deployment_event", "detail", JSONField(null=True))),
    # the shell `x` and `exec` open in a service's container; NULL: sh
    5: lambda store, m: run_migrations(m.add_column("service", "shell", CharField(null=True))),
}


def current_version(store) -> int:
    if not store.db.table_exists("meta"):
        return 0
    row = Meta.get_or_none(Meta.key == "schema_version")
    return int(row.value) if row else 0


def migrate(store) -> int:
    # Read first: an up-to-date store needs no write lock, so opening it (every CLI command, the console) does not
    # queue behind another process's write transaction.
    version = current_version(store)
    if version == LATEST:
        return version
    with store.write():
        version = current_version(store)
        if version > LATEST:
            raise StoreError(f"the store has schema version {version}, newer than this program's {LATEST}; upgrade")
        if version == 0:
            store.db.create_tables(MODELS, safe=True)
            import uuid
            Meta.insert(key="store_id", value=uuid.uuid4().hex[:12]).on_conflict_ignore().execute()
            version = LATEST  # the tables are created from today's models: no step to run
        for step in sorted(n for n in STEPS if version < n <= LATEST):  # numbers may skip (branches merged)
            STEPS[step](store, _migrator(store))
            version = step
        Meta.insert(key="schema_version", value=str(version)).on_conflict(
            conflict_target=[Meta.key], update={Meta.value: str(version)}).execute()
    return version
