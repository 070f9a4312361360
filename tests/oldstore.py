"""Turn a store made by today's code back into a store of schema version 1 (what the first release wrote), rows
kept: every column a later migration step adds is dropped and the version is set to 1. Tests then open it with
today's code and check that it migrates in place, every row kept."""
from playhouse.migrate import migrate as run_migrations

from storage import migrations
from storage.models import Meta

# (table, column) added by each step after version 1: keep in step with storage/migrations.py STEPS
ADDED_AFTER_V1 = [
    ("deployment", "wait_reason"),                                  # step 2
    ("rollback", "owner"), ("rollback", "owner_machine"),           # step 3
    ("rollback", "owner_pid"), ("rollback", "heartbeat_at"),
    ("deployment_event", "detail"),                                 # step 4
    ("service", "shell"),                                           # step 5
    ("host", "address"),                                            # step 7
]
# step 6 adds no column: the change counter (Meta `changes` and its triggers), dropped by drop_change_counter


def downgrade_to_v1(store) -> None:
    """Call inside store.write()."""
    migrations.drop_change_counter(store)                           # step 6
    m = migrations._migrator(store)
    run_migrations(*(m.drop_column(table, column) for table, column in ADDED_AFTER_V1))
    Meta.update(value="1").where(Meta.key == "schema_version").execute()
