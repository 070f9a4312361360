"""The six phases on a real engine (issue: foundation)."""
import os
import re
import threading
import time

import pytest

from console.engine import labels as L
from console.engine.cleanup import Cleaner
from console.engine.errors import InputError
from console.engine.paths import link_target
from console.engine.pipeline import container_name
from storage.models import Deployment, DeploymentEvent, PhaseRun
from tests.conftest import make_service_dir, wait_for


def test_deployment_reaches_success_healthy_labelled_current_and_route(engine, service_dir, docker_client):
    engine.add_service("web", str(service_dir), route_host="web.example.com")
    dep = engine.deploy("web")
    assert dep.status == "success", dep.error
    info = docker_client.api.inspect_container(container_name("web", dep.id))
    assert info["State"]["Running"]
    labels = info["Config"]["Labels"]
    assert labels[L.MANAGED] == "true" and labels[L.DEPLOYMENT] == dep.id and labels[L.SERVICE] == "web"
    assert labels[L.PROJECT].isdigit()
    assert link_target(engine.paths.current("web")) == dep.id
    route = engine.paths.route("web").read_text()
    assert "web.example.com" in route and "127.0.0.1:" in route
    phases = [p.phase for p in PhaseRun.select().where(PhaseRun.deployment == dep.id).order_by(PhaseRun.id)]
    assert phases == ["PULLING_SOURCE", "BUILDING", "COPYING_FILES", "CREATING_SYMLINKS", "UPDATING_ROUTES",
                      "HEALTH_CHECK"]
    assert all(p.finished_at >= p.started_at for p in PhaseRun.select().where(PhaseRun.deployment == dep.id))
    assert docker_client.api.inspect_image(f"deployer/web:{dep.id}")["Config"]["Labels"][L.DEPLOYMENT] == dep.id


def test_second_success_supersedes_the_first_and_stops_it(engine, service_dir, docker_client):
    engine.add_service("web", str(service_dir))
    first = engine.deploy("web")
    second = engine.deploy("web")
    assert second.status == "success"
    assert Deployment.get_by_id(first.id).status == "superseded"
    assert not docker_client.api.inspect_container(container_name("web", first.id))["State"]["Running"]
    assert link_target(engine.paths.previous("web")) == first.id


def test_failing_health_check_ends_failed(engine, tmp_path):
    src = make_service_dir(tmp_path / "bad", dockerfile="FROM deployer/base:busybox\n"
                           'CMD ["httpd", "-f", "-p", "8080", "-h", "/nonexistent"]\n')
    engine.settings.pipeline.health_timeout = 4
    engine.add_service("bad", str(src), health_path="/missing")
    dep = engine.deploy("bad")
    assert dep.status == "failed"
    # the container must answer before the route moves to it: it fails there, and no route ever led to it
    assert "UPDATING_ROUTES" in dep.error
    assert not engine.paths.route("bad").exists()


def test_cancel_during_slow_build_stops_within_2s_and_its_cleanup_leaves_no_container(engine, tmp_path, docker_client):
    src = make_service_dir(tmp_path / "slow", extra="RUN sleep 30")
    engine.add_service("slow", str(src))
    dep = engine.create_deployment("slow")
    result = {}
    worker = threading.Thread(target=lambda: result.setdefault("status", engine.pipeline.run(dep.id)))
    worker.start()
    wait_for(lambda: DeploymentEvent.select().where((DeploymentEvent.deployment == dep.id) &
                                                    (DeploymentEvent.message.contains("sleep 30"))).exists(),
             # within the 30 s of the step: a step's line is in the events while it runs, not when the next comes
             timeout=25, what="the build to reach RUN sleep 30")
    time.sleep(0.5)
    t0 = time.monotonic()
    engine.cancel(dep.id)
    recorded = time.monotonic()
    worker.join(10)
    stopped = time.monotonic()
    # the pipeline's part: from the cancel being in the store to the pipeline having stopped. The store write itself
    # is the disk's (a WAL checkpoint's fsync on a busy CI disk once took 2 s); it is bounded separately.
    assert not worker.is_alive(), "the pipeline did not stop within 10 s of the cancel"
    assert stopped - recorded < 2.0, f"the pipeline took {stopped - recorded:.2f} s to stop after the cancel"
    assert recorded - t0 < 5.0, f"recording the cancel took {recorded - t0:.2f} s"
    assert Deployment.get_by_id(dep.id).status == "cancelled"
    assert result["status"] == "cancelled"
    # the pipeline only stops; its cleanup task removes whatever the aborted build left carrying our labels
    assert Cleaner(engine.ctx).run_due()["done"] == 1
    assert docker_client.api.containers(all=True, filters={"label": f"{L.DEPLOYMENT}={dep.id}"}) == []
    # the engine aborted the build: no intermediate container still runs `sleep 30`
    token = re.search(r"echo (\w+)", (src / "Dockerfile").read_text()).group(1)
    wait_for(lambda: not [c for c in docker_client.api.containers() if token in (c.get("Command") or "")],
             timeout=10, what="the build container to go")


@pytest.mark.parametrize("phase", ["PULLING_SOURCE", "BUILDING", "COPYING_FILES", "CREATING_SYMLINKS",
                                   "UPDATING_ROUTES", "HEALTH_CHECK"])
def test_running_a_phase_twice_leaves_the_same_result(engine, service_dir, docker_client, phase):
    engine.add_service("web", str(service_dir))
    dep = engine.deploy("web")
    assert dep.status == "success"
    before = (docker_client.api.containers(all=True, filters={"label": f"{L.DEPLOYMENT}={dep.id}"}),
              link_target(engine.paths.current("web")), engine.paths.route("web").read_text())
    # run the same phase again, as a resume would after a crash in it
    with engine.store.write():
        Deployment.update(status="failed").where(Deployment.id == dep.id).execute()
    again = engine.resume(dep.id, from_phase=phase)
    assert again.status == "success"
    after = (docker_client.api.containers(all=True, filters={"label": f"{L.DEPLOYMENT}={dep.id}"}),
             link_target(engine.paths.current("web")), engine.paths.route("web").read_text())
    assert [c["Id"] for c in after[0]] == [c["Id"] for c in before[0]]
    assert after[1:] == before[1:]


def test_illegal_status_moves_are_refused(engine, service_dir):
    from console.engine import deployments as D
    engine.add_service("web", str(service_dir))
    dep = engine.create_deployment("web")
    with pytest.raises(InputError, match="cannot become success"):
        D.move(engine.store, dep.id, "success")
    D.move(engine.store, dep.id, "cancelled")
    for to in ("deploying", "success", "failed", "queued"):
        with pytest.raises(InputError):
            D.move(engine.store, dep.id, to)
    with pytest.raises(InputError, match="only queued or deploying"):
        engine.cancel(dep.id)


@pytest.mark.sqlite_only  # the SQLite file mode
def test_db_file_is_private(engine):
    assert oct(os.stat(engine.settings.data_dir / "deployer.db").st_mode & 0o777) == "0o600"


def test_a_git_repository_source_is_cloned_at_its_commit(engine, tmp_path):
    import subprocess
    src = make_service_dir(tmp_path / "repo")
    (src / "untracked.txt").write_text("not committed")
    git = ["git", "-C", str(src), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run(git[:3] + ["init", "-q"], check=True)
    subprocess.run(git + ["add", "Dockerfile"], check=True)
    subprocess.run(git + ["commit", "-qm", "first"], check=True)
    engine.add_service("gitweb", str(src))
    dep = engine.deploy("gitweb")
    assert dep.status == "success", dep.error
    source = engine.paths.release(dep.id) / "source"
    assert (source / "Dockerfile").exists() and not (source / "untracked.txt").exists()
    detail = PhaseRun.get((PhaseRun.deployment == dep.id) & (PhaseRun.phase == "PULLING_SOURCE")).detail
    assert detail.startswith("cloned ")


def test_resume_from_health_check_after_cleanup_redoes_what_is_missing(engine, tmp_path, docker_client):
    """The failed deployment's resources were cleaned; a resume from a late phase rebuilds what is gone."""
    from console.engine.cleanup import Cleaner
    src = make_service_dir(tmp_path / "web")
    (src / "Dockerfile").write_text((src / "Dockerfile").read_text().replace("echo ok", "echo broken").replace(
        "/www/index.html", "/www/other.html"))
    engine.settings.pipeline.health_timeout = 3
    engine.add_service("web", str(src))
    dep = engine.deploy("web")
    assert dep.status == "failed"
    Cleaner(engine.ctx).run_due()
    assert not engine.paths.release(dep.id).exists()
    make_service_dir(src)  # the operator fixes the source
    engine.settings.pipeline.health_timeout = 20
    again = engine.resume(dep.id, from_phase="HEALTH_CHECK")
    assert again.status == "success", again.error
    assert again.attempts == 1
    assert docker_client.api.inspect_container(container_name("web", dep.id))["State"]["Running"]


def test_a_container_that_exits_fails_with_its_last_log_line_not_a_timestamp(engine, tmp_path):
    crash = make_service_dir(tmp_path / "crash", dockerfile='FROM deployer/base:busybox\n'
                             'CMD ["sh", "-c", "echo the config file is missing; exit 3"]\n')
    engine.add_service("crash", str(crash))
    dep = engine.deploy("crash")
    assert dep.status == "failed"
    assert dep.error.endswith("container exited with code 3: the config file is missing"), dep.error
