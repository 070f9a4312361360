"""`exec ID [-- CMD...]` and `clean ID...` from the CLI, against a real container on the real engine."""
import json

import pytest

from console.engine import labels as L
from console.engine.releases import container_name
from storage.models import CleanupTask, Deployment
from tests.conftest import make_service_dir
from tests.test_cli import cli  # noqa: F401 - the fixture


@pytest.fixture
def running(engine, service_dir):
    engine.add_service("web", str(service_dir))
    dep = engine.deploy("web")
    assert dep.status == "success", dep.error
    return dep


def audit_records(cli, action):  # noqa: F811
    out = cli("audit", "--json")
    assert out.returncode == 0, out.stderr
    return [r for r in json.loads(out.stdout) if r["action"] == action]


def test_exec_echo_hi_prints_hi_passes_the_exit_code_through_and_is_audited(cli, running):  # noqa: F811
    out = cli("exec", running.id, "--", "echo", "hi")
    assert (out.returncode, out.stdout) == (0, "hi\n"), out.stderr
    out = cli("exec", running.id, "--", "sh", "-c", "echo out; exit 7")
    assert (out.returncode, out.stdout) == (7, "out\n"), out.stderr
    records = audit_records(cli, "exec")
    assert len(records) == 2 and all(r["outcome"] == "ok" for r in records)
    assert records[0]["target"] == f"{running.id} container {container_name('web', running.id)}"
    assert "echo hi" in records[0]["message"]


def test_exec_refuses_a_foreign_container_with_the_deployments_name_and_leaves_it_alone(cli, running,  # noqa: F811
                                                                                     docker_client):
    name = container_name("web", running.id)
    docker_client.api.remove_container(name, force=True)
    stranger = docker_client.containers.run("deployer/base:busybox", ["sleep", "300"], name=name, detach=True)
    try:
        out = cli("exec", running.id, "--", "echo", "hi")
        assert out.returncode == 2, (out.stdout, out.stderr)
        assert out.stdout == ""
        assert f"container {name}" in out.stderr and "not deployment" in out.stderr, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1
        stranger.reload()
        assert stranger.status == "running"
        assert [r["outcome"] for r in audit_records(cli, "exec")] == ["refused"]
    finally:
        stranger.remove(force=True)


def test_exec_of_an_unknown_id_or_in_read_only_mode_is_refused_and_runs_nothing(cli, running):  # noqa: F811
    out = cli("--read-only", "exec", running.id, "--", "echo", "hi")
    assert out.returncode == 2 and out.stdout == "" and "read-only mode: exec refused" in out.stderr, out.stderr
    out = cli("exec", "abcdef123456", "--", "echo", "hi")
    assert out.returncode == 2 and "unknown deployment abcdef123456" in out.stderr, out.stderr
    assert audit_records(cli, "exec") == []


def test_clean_runs_a_failed_deployments_cleanup_now_and_names_the_ones_it_skips(cli, engine, running,  # noqa: F811
                                                                              tmp_path, docker_client):
    engine.settings.cleanup_delay = 600
    engine.settings.health_timeout = 3
    engine.add_service("sick", str(make_service_dir(tmp_path / "sick")), health_path="/never")
    failed = engine.deploy("sick")
    assert failed.status == "failed"
    assert docker_client.api.containers(all=True, filters={"label": f"{L.DEPLOYMENT}={failed.id}"})
    out = cli("clean", failed.id, running.id)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert out.stdout.split() == [failed.id, "done"]
    assert out.stderr.strip() == (f"error: {running.id}: deployment {running.id} is success; only failed or "
                                  f"cancelled deployments are cleaned up")
    assert CleanupTask.get(CleanupTask.deployment == failed.id).state == "done"
    assert docker_client.api.containers(all=True, filters={"label": f"{L.DEPLOYMENT}={failed.id}"}) == []
    assert Deployment.get_by_id(running.id).status == "success"
    out = cli("clean", failed.id, "--json")
    assert out.returncode == 2
    assert json.loads(out.stdout) == [{"id": failed.id, "ok": False, "code": 2,
                                       "error": f"deployment {failed.id} is already cleaned up"}]
