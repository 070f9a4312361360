"""Schema version and forward migrations (playhouse.migrate). Version 1 is the first schema.

To change the schema: bump SCHEMA_VERSION (storage/__init__.py) and add a function `_to_N(migrator)` below; it
runs once, in order, inside a write transaction, and the version in Meta moves with it.
"""
from peewee import CharField, DoubleField, IntegerField, TextField

from storage import SCHEMA_VERSION
from storage.errors import StoreError
from storage.models import MODELS, JSONField, Meta

LATEST = SCHEMA_VERSION


def run_migrations(*operations) -> None:
    # playhouse.migrate loads every backend's extension: imported only when a step runs, not at every store opening
    from playhouse.migrate import migrate
    migrate(*operations)


# The store's change counter (Meta `changes`): every write to a table the console shows bumps it, in the writer's own
# transaction, whoever the writer is (this process, another console, the CLI, a test). A console that polls reads it
# first and skips the full read when it has not moved (see console/tui/data.py). The lease's renewals (every 2 s) and
# the job-run records (two writes per job run; dispatch and cleanup run every second) do not bump it: the console
# reads the holder beside it and the job runs with the status, every few seconds. SQLite has row triggers only (one
# bump per row written); PostgreSQL bumps once per statement.
CHANGES_KEY = "changes"
WATCHED = ("deployment", "deployment_event", "cleanup_task", "service", "host", "rollback")


def install_change_counter(store) -> None:
    """Create the counter row and the triggers that bump it (idempotent); inside a write transaction."""
    Meta.insert(key=CHANGES_KEY, value="0").on_conflict_ignore().execute()
    bump = f"UPDATE meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE key = '{CHANGES_KEY}'"
    if store.is_sqlite:
        for table in WATCHED:
            for op in ("INSERT", "UPDATE", "DELETE"):
                store.db.execute_sql(f"CREATE TRIGGER IF NOT EXISTS {table}_{op.lower()}_changes AFTER {op} ON "
                                     f'"{table}" BEGIN {bump}; END')
        return
    # Deferred to the commit, once per transaction: the bump locks the counter's row only for the instant of the
    # commit (an immediate bump held it for the whole transaction, so a writer outside store.write() waited behind
    # any open one: two transactions inserting events deadlocked a test), and it is still seen with the rows.
    store.db.execute_sql("CREATE OR REPLACE FUNCTION deployer_changes() RETURNS trigger AS $$ BEGIN "
                         "IF current_setting('deployer.bumped', true) = txid_current()::text THEN RETURN NULL; "
                         "END IF; PERFORM set_config('deployer.bumped', txid_current()::text, true); "
                         f"UPDATE meta SET value = (value::bigint + 1)::text WHERE key = '{CHANGES_KEY}'; "
                         "RETURN NULL; END $$ LANGUAGE plpgsql")
    for table in WATCHED:
        store.db.execute_sql(f'DROP TRIGGER IF EXISTS {table}_changes ON "{table}"')
        store.db.execute_sql(f'CREATE CONSTRAINT TRIGGER {table}_changes AFTER INSERT OR UPDATE OR DELETE ON '
                             f'"{table}" DEFERRABLE INITIALLY DEFERRED FOR EACH ROW '
                             "EXECUTE PROCEDURE deployer_changes()")  # EXECUTE PROCEDURE: also before PG 11


def drop_change_counter(store) -> None:
    """The reverse of install_change_counter (tests/oldstore.py turns a store back into an older schema)."""
    if store.is_sqlite:
        for table in WATCHED:
            for op in ("insert", "update", "delete"):
                store.db.execute_sql(f"DROP TRIGGER IF EXISTS {table}_{op}_changes")
    else:
        store.db.execute_sql("SET CONSTRAINTS ALL IMMEDIATE")  # bumps still pending in this transaction fire now
        for table in WATCHED:
            store.db.execute_sql(f'DROP TRIGGER IF EXISTS {table}_changes ON "{table}"')
        store.db.execute_sql("DROP FUNCTION IF EXISTS deployer_changes()")
    Meta.delete().where(Meta.key == CHANGES_KEY).execute()


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
    # the change counter a polling console reads before a full read (rows kept; nothing else changes)
    6: lambda store, m: install_change_counter(store),
    # the address a host's containers publish their port on, for a proxy on another machine; NULL: 127.0.0.1
    7: lambda store, m: run_migrations(m.add_column("host", "address", CharField(null=True))),
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
            install_change_counter(store)
            version = LATEST  # the tables are created from today's models: no step to run
        if not store.is_sqlite:   # a table with deferred bumps pending cannot be altered: they fire now
            store.db.execute_sql("SET CONSTRAINTS ALL IMMEDIATE")
        for step in sorted(n for n in STEPS if version < n <= LATEST):  # numbers may skip (branches merged)
            STEPS[step](store, _migrator(store))
            version = step
        Meta.insert(key="schema_version", value=str(version)).on_conflict(
            conflict_target=[Meta.key], update={Meta.value: str(version)}).execute()
    return version
