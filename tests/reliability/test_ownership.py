"""Ownership (issue 6): 20 foreign containers and 20 foreign volumes on the real engine -- no labels, managed=false,
look-alike deployment ids (`<id>-x`, `x<id>`, `<ID>`, a prefix), another store's id, another project's labels, a
project-scoped volume label -- and the service's own shared project volume run through every cleanup, retention and
reconcile path. 0 may be touched.

The foreign resources are created here from deployer/base:busybox, named `fgn-<token>-*`, and removed at the end
(by the ids recorded at creation; nothing else is touched)."""
import uuid
from concurrent.futures import ThreadPoolExecutor

import docker
import pytest

from console.engine import labels as L
from console.engine.cleanup import Cleaner
from storage.models import CleanupTask, Deployment
from tests.conftest import make_service_dir

CRASHING = 'FROM deployer/base:busybox\nCMD ["sh", "-c", "echo starting; exit 3"]\n'


def foreign_label_sets(store_id: str, a: str, b: str, token: str) -> list[tuple[str, dict]]:
    """20 (name suffix, labels) pairs, none of which is ours for deployment a or b."""
    other_store = uuid.uuid4().hex[:12]
    case_id = next((x for x in (a, b) if x.upper() != x), None)
    sets = []
    for n, dep in enumerate((a, b)):
        sets += [
            (f"nolabels-{n}", {}),
            (f"managed-false-{n}", {L.MANAGED: "false", L.STORE: store_id, L.DEPLOYMENT: dep}),
            (f"managed-missing-{n}", {L.STORE: store_id, L.DEPLOYMENT: dep, L.SERVICE: "bad"}),
            (f"suffix-x-{n}", {L.MANAGED: "true", L.STORE: store_id, L.DEPLOYMENT: f"{dep}-x", L.SERVICE: "bad"}),
            (f"prefix-x-{n}", {L.MANAGED: "true", L.STORE: store_id, L.DEPLOYMENT: f"x{dep}", L.SERVICE: "bad"}),
            (f"other-store-{n}", {L.MANAGED: "true", L.STORE: other_store, L.DEPLOYMENT: dep, L.SERVICE: "bad"}),
            (f"other-project-{n}", {"com.docker.compose.project": "bad", "com.docker.compose.service": "bad",
                                    L.DEPLOYMENT: dep, L.SERVICE: "bad", "owner": "someone-else"}),
        ]
    sets += [
        ("upper-case", {L.MANAGED: "true", L.STORE: store_id, L.DEPLOYMENT: (case_id or a).upper(),
                        L.SERVICE: "bad"}),
        ("id-prefix", {L.MANAGED: "true", L.STORE: store_id, L.DEPLOYMENT: a[:8], L.SERVICE: "bad"}),
        ("managed-TRUE", {L.MANAGED: "TRUE", L.STORE: store_id, L.DEPLOYMENT: a, L.SERVICE: "bad"}),
        ("store-upper", {L.MANAGED: "true", L.STORE: store_id.upper() if store_id.upper() != store_id
                         else store_id + "0", L.DEPLOYMENT: b, L.SERVICE: "bad"}),
        ("project-scope", {L.MANAGED: "true", L.STORE: store_id, L.DEPLOYMENT: a, L.SCOPE: "project",
                           L.PROJECT: "1", L.SERVICE: "bad"}),
        ("store-suffix", {L.MANAGED: "true", L.STORE: f"{store_id}-x", L.DEPLOYMENT: b, L.SERVICE: "bad"}),
    ]
    assert len(sets) == 20
    return [(f"fgn-{token}-{suffix}", labels) for suffix, labels in sets]


class Foreign:
    def __init__(self, client: docker.DockerClient):
        self.client = client
        self.containers: list[str] = []
        self.volumes: list[str] = []

    def create(self, label_sets):
        api = self.client.api

        def one(item):
            name, labels = item
            vol = api.create_volume(name=f"{name}-vol", labels=labels)["Name"]
            cid = api.create_container("deployer/base:busybox", command=["sleep", "3600"], name=name,
                                       labels=labels, host_config=api.create_host_config(init=True))["Id"]
            api.start(cid)
            return cid, vol

        with ThreadPoolExecutor(8) as pool:
            for cid, vol in pool.map(one, label_sets):
                self.containers.append(cid)
                self.volumes.append(vol)

    def snapshot(self) -> dict:
        api = self.client.api
        state = {}
        for cid in self.containers:
            try:
                info = api.inspect_container(cid)
            except docker.errors.NotFound:
                state[cid] = "gone"
                continue
            s = info["State"]
            state[cid] = (s["Status"], s["StartedAt"], s["FinishedAt"], info["RestartCount"], info["Config"]["Labels"])
        for name in self.volumes:
            try:
                info = api.inspect_volume(name)
                state[name] = (info["CreatedAt"], info["Labels"])
            except docker.errors.NotFound:
                state[name] = "gone"
        return state

    def remove(self):
        for cid in self.containers:
            try:
                self.client.api.remove_container(cid, force=True, v=True)
            except docker.errors.APIError:
                pass
        for name in self.volumes:
            try:
                self.client.api.remove_volume(name, force=True)
            except docker.errors.APIError:
                pass


@pytest.fixture
def foreign(docker_client):
    f = Foreign(docker_client)
    yield f
    f.remove()


def _ours(client, store_id, deployment_id, foreign):
    flt = {"label": [f"{L.MANAGED}=true", f"{L.STORE}={store_id}", f"{L.DEPLOYMENT}={deployment_id}"]}
    return ([c["Id"] for c in client.api.containers(all=True, filters=flt) if c["Id"] not in foreign.containers],
            [v["Name"] for v in (client.api.volumes(filters=flt) or {}).get("Volumes") or []
             if v["Name"] not in foreign.volumes])


def no_foreign_in_findings(result: dict, token: str) -> None:
    for key in ("orphans", "drift"):
        for item in result.get(key) or []:
            assert not str(item.get("name", "")).startswith(f"fgn-{token}"), f"reconcile {key}: {item}"


def test_foreign_and_look_alike_resources_survive_every_cleanup_retention_and_reconcile_path(
        engine, tmp_path, docker_client, foreign):
    engine.settings.cleanup.keep_failed = 1
    src = make_service_dir(tmp_path / "bad", dockerfile=CRASHING)
    # a shared project volume too: it belongs to the project, not to a deployment, so no path may remove it (its
    # name carries the store id, so concurrent test stores on the engine do not share it)
    engine.add_service("bad", str(src), volumes=["data:/data"], shared_volumes=["cache:/cache"])
    a = engine.deploy("bad")
    b = engine.deploy("bad")
    assert a.status == b.status == "failed"
    for dep in (a, b):
        containers, volumes = _ours(docker_client, engine.store_id, dep.id, foreign)
        assert len(containers) == 1 and len(volumes) == 1
    shared_filter = {"label": [f"{L.STORE}={engine.store_id}", f"{L.SCOPE}=project"]}
    shared = [v["Name"] for v in docker_client.api.volumes(filters=shared_filter)["Volumes"] or []]
    assert len(shared) == 1, shared
    shared_before = docker_client.api.inspect_volume(shared[0])

    token = uuid.uuid4().hex[:6]
    foreign.create(foreign_label_sets(engine.store_id, a.id, b.id, token))
    assert len(foreign.containers) == 20 and len(foreign.volumes) == 20
    before = foreign.snapshot()

    def no_foreign_in(plan):
        for row in plan:
            for item in row["containers"] + row["volumes"]:
                assert not item.startswith(f"fgn-{token}"), f"the plan lists a foreign resource: {item}"

    cleaner = Cleaner(engine.ctx)
    no_foreign_in(cleaner.plan())
    # keep-last-1: a is cleaned, b (the newest failed) is kept, its container stopped
    counts = cleaner.run_due()
    assert counts["done"] == 1 and counts["kept"] == 1, counts
    assert CleanupTask.get(CleanupTask.deployment == b.id).state == "kept"
    no_foreign_in(cleaner.plan())
    assert cleaner.retention()["rearmed"] == 0
    # keep nothing any more: retention re-arms b, the next run cleans it
    engine.settings.cleanup.keep_failed = 0
    assert cleaner.retention()["rearmed"] == 1
    no_foreign_in(cleaner.plan())
    assert cleaner.run_due()["done"] == 1
    no_foreign_in(engine.cleanup(dry_run=True)["plan"])
    engine.cleanup()
    # with no grace at all, so that the orphan path really acts on whatever it judges an orphan
    engine.settings.scheduler.orphan_grace = 0
    no_foreign_in_findings(engine.reconcile(dry_run=True), token)
    no_foreign_in_findings(engine.reconcile(), token)
    assert cleaner.run_due() == {"done": 0, "kept": 0, "skipped": 0, "retried": 0}

    after = foreign.snapshot()
    touched = [k for k in before if before[k] != after[k]]
    assert touched == [], f"{len(touched)} foreign resource(s) touched: {touched}"
    shared_after = docker_client.api.inspect_volume(shared[0])
    assert (shared_after["CreatedAt"], shared_after["Labels"]) == (shared_before["CreatedAt"], shared_before["Labels"])
    # the paths really ran: our resources are gone
    for dep in (a, b):
        assert _ours(docker_client, engine.store_id, dep.id, foreign) == ([], [])
        assert Deployment.get_by_id(dep.id).status == "failed"
        assert CleanupTask.get(CleanupTask.deployment == dep.id).state == "done"
