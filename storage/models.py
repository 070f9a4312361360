"""The tables. Times are epoch seconds (float) so SQLite and PostgreSQL store them the same way."""
import json

from peewee import (
    AutoField,
    BooleanField,
    CharField,
    DatabaseProxy,
    DoubleField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
)

from storage.clock import now

database = DatabaseProxy()


class JSONField(TextField):
    def db_value(self, value):
        return None if value is None else json.dumps(value, sort_keys=True)

    def python_value(self, value):
        return None if value is None else json.loads(value)


class Base(Model):
    class Meta:
        database = database
        legacy_table_names = False


class Meta(Base):
    key = CharField(primary_key=True)
    value = TextField()


class Project(Base):
    id = AutoField()
    name = CharField(unique=True)
    created_at = DoubleField(default=now)


class Host(Base):
    name = CharField(primary_key=True)
    url = TextField()
    tls_ca = TextField(null=True)
    tls_cert = TextField(null=True)
    tls_key = TextField(null=True)
    # where a proxy on another machine reaches this host's containers: they publish their port on it (NULL: 127.0.0.1)
    address = CharField(null=True)
    is_default = BooleanField(default=False)
    reachable = BooleanField(null=True)
    last_seen_at = DoubleField(null=True)
    last_error = TextField(null=True)
    created_at = DoubleField(default=now)


class Service(Base):
    id = AutoField()
    name = CharField(unique=True)
    project = ForeignKeyField(Project, backref="services", on_delete="CASCADE")
    source = TextField()
    port = IntegerField(default=8080)
    health_path = CharField(default="/")
    route_host = CharField(null=True)
    volumes = JSONField(default=list)          # [{"name": ..., "path": ...}] one per deployment
    shared_volumes = JSONField(default=list)   # [{"name": ..., "path": ...}] one per project
    env = JSONField(default=dict)
    host = CharField(null=True)                # None: the default host
    shell = CharField(null=True)               # what `x` / `exec` runs without a command; None: sh
    created_at = DoubleField(default=now)


class Deployment(Base):
    id = CharField(primary_key=True, max_length=32)
    service = ForeignKeyField(Service, backref="deployments", on_delete="CASCADE")
    status = CharField(index=True)
    phase = CharField(null=True)
    host = CharField()
    image = CharField(null=True)
    error = TextField(null=True)
    owner = CharField(null=True)           # "<machine>:<pid>" of the process running the pipeline
    owner_machine = CharField(null=True)
    owner_pid = IntegerField(null=True)
    heartbeat_at = DoubleField(null=True)
    phase_started_at = DoubleField(null=True)
    resume_from = CharField(null=True)     # set when an operator asks for a resume the leader should run
    attempts = IntegerField(default=0)     # resume attempts so far
    wait_reason = TextField(null=True)     # why a queued deployment is not claimed yet (its service is busy)
    actor = CharField(null=True)
    created_at = DoubleField(default=now, index=True)
    updated_at = DoubleField(default=now)
    started_at = DoubleField(null=True)
    finished_at = DoubleField(null=True)


class PhaseRun(Base):
    id = AutoField()
    deployment = ForeignKeyField(Deployment, backref="phase_runs", on_delete="CASCADE")
    phase = CharField()
    attempt = IntegerField(default=0)
    started_at = DoubleField(default=now)
    finished_at = DoubleField(null=True)
    outcome = CharField(null=True)         # done | skipped | failed | cancelled
    detail = TextField(null=True)


class DeploymentEvent(Base):
    id = AutoField()
    deployment = ForeignKeyField(Deployment, backref="events", null=True, on_delete="CASCADE")
    time = DoubleField(default=now, index=True)
    level = CharField(default="info")      # debug | info | warning | error
    kind = CharField(default="deployment")  # deployment | build | cleanup | reconcile | rollback | audit | host
    message = TextField()
    actor = CharField(null=True)
    host = CharField(null=True)
    detail = JSONField(null=True)          # an audit record: {"action", "target", "outcome"[, "error"]}


class CleanupTask(Base):
    """The outbox: written in the same transaction as the status move that makes cleanup due."""
    id = AutoField()
    deployment = ForeignKeyField(Deployment, backref="cleanup_tasks", on_delete="CASCADE")
    reason = CharField()                   # failed | cancelled | orphan | retention | superseded
    state = CharField(default="pending", index=True)  # pending | running | done | kept | abandoned (host gone)
    due_at = DoubleField(default=now, index=True)
    attempts = IntegerField(default=0)
    last_error = TextField(null=True)
    created_at = DoubleField(default=now)
    updated_at = DoubleField(default=now)
    finished_at = DoubleField(null=True)


class Rollback(Base):
    id = AutoField()
    service = ForeignKeyField(Service, backref="rollbacks", on_delete="CASCADE")
    from_deployment = ForeignKeyField(Deployment, null=True, on_delete="SET NULL", backref="rollbacks_from")
    to_deployment = ForeignKeyField(Deployment, on_delete="CASCADE", backref="rollbacks_to")
    state = CharField(default="active", index=True)  # active | completed | failed
    actor = CharField(null=True)
    error = TextField(null=True)
    owner = CharField(null=True)           # "<machine>:<pid>:<thread>" of the process running it, as for deployments
    owner_machine = CharField(null=True)
    owner_pid = IntegerField(null=True)
    heartbeat_at = DoubleField(null=True)  # an active rollback without a fresh heartbeat is recovered by reconcile
    started_at = DoubleField(default=now)
    finished_at = DoubleField(null=True)


class Lease(Base):
    name = CharField(primary_key=True)
    holder = CharField(null=True)
    holder_machine = CharField(null=True)
    holder_pid = IntegerField(null=True)
    acquired_at = DoubleField(null=True)
    renewed_at = DoubleField(null=True)
    expires_at = DoubleField(null=True)


class JobRun(Base):
    id = AutoField()
    job = CharField(index=True)
    holder = CharField()
    started_at = DoubleField(default=now)
    finished_at = DoubleField(null=True)
    outcome = CharField(null=True)         # ok | error | skipped
    counts = JSONField(default=dict)
    error = TextField(null=True)


MODELS = [Meta, Project, Host, Service, Deployment, PhaseRun, DeploymentEvent, CleanupTask, Rollback, Lease, JobRun]
