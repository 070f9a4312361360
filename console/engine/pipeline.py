"""The six phases of a deployment. Each phase first checks what is already done and completes only what is missing,
so running it again after a crash (or resuming from any phase) is safe. Resume = run from phase N.

A RunControl thread beside the pipeline heartbeats the deployment and watches its row: a cancel (status no longer
`deploying`), a takeover (another owner), or an overrun phase deadline stops the pipeline within a fraction of a
second, also inside long waits (the build stream is cut, health polling stops).
"""
import json
import logging
import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from console.engine import deployments as D
from console.engine import labels as L
from console.engine import metrics, notify, releases
from console.engine.errors import Cancelled, DeployerError, InputError, one_line
from console.engine.liveness import Heartbeat, pipeline_alive
from console.engine.paths import atomic_write, link_target
from console.engine.releases import container_name  # noqa: F401 - the name other modules import from here
from console.engine.routes import route_for, wait_through_proxy
from console.engine.validate import PHASES
from storage.clock import now
from storage.db import StoreUnavailable
from storage.models import Deployment, DeploymentEvent, PhaseRun, Service

log = logging.getLogger(__name__)
WAIT_POLL_S = 1.0  # a deployment waiting for its service polls the claim this often


def deployment_volume(deployment_id: str, name: str) -> str:
    return f"dpl-{deployment_id}-{name}"


def shared_volume(store_id: str, project_id: int, name: str) -> str:
    """A project volume's name carries the store id: two installs on one engine never share one by accident."""
    return f"prj-{store_id}-{project_id}-{name}"


def image_tag(service: str, deployment_id: str) -> str:
    return f"deployer/{service}:{deployment_id}"


def wait_healthy(gw, info, port: int, path: str, timeout: float, check=lambda: None, sleep=time.sleep) -> str:
    """Wait until the container (a handle from `find_ours`) answers HTTP 2xx/3xx on `path` (or its HEALTHCHECK says
    healthy). Raises on exit, on `unhealthy` and on timeout; `check()` is called every round so a cancel stops the
    wait. Every call goes to the checked container's id, never to whatever holds its name by then."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while True:
        check()
        details = gw.inspect(info.id)
        if details is None:
            raise RuntimeError(f"container {info.name} disappeared")
        state = details.get("State") or {}
        if not state.get("Running"):
            # the log lines carry the engine's timestamp first: the reason an operator reads is the text after it
            tail = [line.partition(" ")[2] or line for line in
                    gw.logs(info.id, tail=3).decode(errors="replace").strip().splitlines()]
            raise RuntimeError(f"container exited with code {state.get('ExitCode')}"
                               + (f": {tail[-1][-200:]}" if tail else ""))
        health = (state.get("Health") or {}).get("Status")
        if health == "healthy":
            return "container reports healthy"
        if health == "unhealthy":
            raise RuntimeError("container reports unhealthy")
        if health is None:
            ok, last = gw.http_check(info, port, path)
            if ok:
                return f"HTTP {path} answered 2xx/3xx"
        if time.monotonic() > deadline:
            raise RuntimeError(f"health check timed out after {timeout:.0f} s ({last})")
        sleep(0.5)


class ServiceBusy(InputError):
    """Another deployment of the service holds it (one deployment per service at a time): this one stays `queued`,
    its `wait_reason` says for what."""


class Stop(Exception):
    """The pipeline must stop: cancelled, taken over, or a phase deadline passed."""

    def __init__(self, why: str, reason: str):
        super().__init__(reason)
        self.why = why


class RunControl:
    """Heartbeats and the stop watch for one running pipeline. The heartbeat goes on after a stop (a cancel) until
    the pipeline has really stopped, so the cleanup task knows to wait for it (`liveness.pipeline_alive`)."""

    def __init__(self, ctx, deployment_id: str, owner: str):
        self.ctx = ctx
        self.deployment_id = deployment_id
        self.owner = owner
        self.stop_reason: tuple[str, str] | None = None
        self._heartbeat = Heartbeat(ctx.store, f"runctl-{deployment_id}", self._beat,
                                    ctx.settings.pipeline.heartbeat_interval, watch=self._watch)

    def start(self):
        self._heartbeat.start()
        return self

    def close(self):
        self._heartbeat.close()

    def should_stop(self) -> bool:
        return self.stop_reason is not None

    def check(self):
        if self.stop_reason is not None:
            raise Stop(*self.stop_reason)

    def sleep(self, seconds: float):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.check()
            time.sleep(min(0.1, max(0.0, end - time.monotonic())))
        self.check()

    def _watch(self):
        if self.stop_reason is None:
            self.stop_reason = self._why_stop()

    def _beat(self):
        Deployment.update(heartbeat_at=now()).where(
            (Deployment.id == self.deployment_id) & (Deployment.owner == self.owner)).execute()

    def _why_stop(self) -> tuple[str, str] | None:
        row = (Deployment.select(Deployment.status, Deployment.owner, Deployment.phase, Deployment.phase_started_at)
               .where(Deployment.id == self.deployment_id).first())
        if row is None or row.status == "cancelled":
            return "cancelled", "deployment was cancelled"
        if row.status != "deploying":
            return "ended", f"deployment became {row.status} elsewhere"
        if row.owner != self.owner:
            return "taken-over", f"deployment was taken over by {row.owner}"
        if row.phase and row.phase_started_at:
            deadline = float(self.ctx.settings.pipeline.phase_deadlines.get(row.phase, 300))
            if now() - row.phase_started_at > deadline:
                return "deadline", f"phase {row.phase} overran its deadline of {deadline:.0f} s"
        return None

    def ended(self) -> None:
        """The pipeline has stopped: close the watch and clear the heartbeat of a row that is no longer deploying
        (a deploying row keeps it: a handed-over or taken-over deployment is judged by its new owner)."""
        self.close()
        try:
            with self.ctx.store.write():
                Deployment.update(heartbeat_at=None).where(
                    (Deployment.id == self.deployment_id) & (Deployment.owner == self.owner) &
                    (Deployment.status != "deploying")).execute()
        except Exception:  # the heartbeat then goes stale within zombie_after, which says the same
            log.exception("clearing the heartbeat of %s", self.deployment_id)


def _phase_outcome(error: BaseException, stop_reason: tuple[str, str] | None) -> str:
    """How a phase that raised ended: a phase cut by a stop (cancel, hand-over, take-over) did not fail, even when
    the stop showed as a broken stream or connection before the stop itself was raised."""
    why = error.why if isinstance(error, Stop) else (stop_reason[0] if stop_reason else None)
    if why is None:
        return "cancelled" if isinstance(error, Cancelled) else "failed"
    return {"taken-over": "interrupted", "ended": "interrupted", "deadline": "failed"}.get(why, "cancelled")


@dataclass
class Job:
    deployment: Deployment
    service: Service
    gateway: object
    control: RunControl
    attempt: int


class Pipeline:
    """Runs one deployment from a phase to the end. `ctx` is the engine's Context (store, settings, hosts, paths,
    store_id)."""

    def __init__(self, ctx):
        self.ctx = ctx

    # ---- claiming
    def claim(self, deployment_id: str, from_phase: str | None = None, actor_name: str | None = None,
              resume: bool = False) -> tuple[Deployment, str]:
        """queued -> deploying (or a resume), in one write. Raises ServiceBusy, with the row left as it was and (for a
        queued one) its wait_reason recorded, while another deployment of the service holds it."""
        owner = f"{D.MACHINE}:{os.getpid()}:{threading.get_ident() % 100000}"
        with self.ctx.store.write():
            dep = Deployment.get_or_none(Deployment.id == deployment_id)
            if dep is None:
                raise InputError(f"unknown deployment {deployment_id}")
            if resume:
                if dep.status not in D.RESUMABLE:
                    raise InputError(f"deployment {deployment_id} is {dep.status}; only failed or stuck "
                                     f"(deploying) deployments can be resumed")
                phase = from_phase or dep.phase or PHASES[0]
                attempts = dep.attempts + 1
                message = f"Resuming deployment {deployment_id} from {phase} (attempt {attempts})"
            else:
                if dep.status != "queued":
                    raise InputError(f"deployment {deployment_id} is {dep.status}, not queued")
                phase, attempts, message = PHASES[0], dep.attempts, f"Deployment {deployment_id} started"
            busy = self._service_holder(dep, resume)
            if busy is None:
                D.move(self.ctx.store, deployment_id, "deploying", message=message, actor_name=actor_name,
                       owner=owner, owner_machine=D.MACHINE, owner_pid=os.getpid(), heartbeat_at=now(),
                       phase=phase, phase_started_at=now(), attempts=attempts, resume_from=None, error=None,
                       wait_reason=None)
            elif not resume and dep.wait_reason != busy:  # one event per reason, not one per poll
                Deployment.update(wait_reason=busy, updated_at=now()).where(Deployment.id == dep.id).execute()
                D.event(dep.id, f"Deployment {dep.id} {busy}", host=dep.host)
        if busy is not None:  # raised after the write commits, so the recorded reason stays
            raise ServiceBusy(f"deployment {deployment_id} {busy}")
        return Deployment.get_by_id(deployment_id), phase

    def _service_holder(self, dep: Deployment, resume: bool) -> str | None:
        """Why `dep` may not start now, or None: one deployment per service at a time. Any other `deploying`
        deployment of the service holds it, and so does a cancelled or failed one whose pipeline has not stopped
        yet (it still puts `current` back). A new deployment also waits for a holder whose pipeline is gone (a
        zombie: reconcile resumes or fails it, or an operator cancels it), so an older deployment never finishes
        after a newer one; a resume waits only for a live holder, so two zombies of one service are resumed one
        after the other. Called inside the claim's write transaction, so two claimers never both pass."""
        others = (Deployment.select(Deployment.id, Deployment.status, Deployment.heartbeat_at,
                                    Deployment.owner_machine, Deployment.owner_pid)
                  .where((Deployment.service == dep.service_id) & (Deployment.id != dep.id) & (
                      (Deployment.status == "deploying") | (Deployment.status.in_(list(D.CLEANUP_ON)) &
                                                             Deployment.heartbeat_at.is_null(False))))
                  .order_by(Deployment.created_at))
        for other in others:
            if pipeline_alive(other, self.ctx.settings.scheduler.zombie_after):
                return f"waits for deployment {other.id} of the same service to " + \
                    ("end" if other.status == "deploying" else "stop")
            if other.status == "deploying" and not resume:
                return (f"waits for deployment {other.id} of the same service: its pipeline is gone "
                        f"(reconcile resumes or fails it, or cancel it)")
        return None

    def claim_when_free(self, deployment_id: str, actor_name: str | None = None, on_wait=None):
        """Claim a queued deployment, waiting (polling) while its service is busy. Returns (row, phase), or (row,
        None) when it stopped being queued meanwhile (cancelled). `on_wait(reason)` is called when the reason
        changes."""
        said = None
        while True:
            try:
                return self.claim(deployment_id, actor_name=actor_name)
            except ServiceBusy as busy:
                if str(busy) != said:
                    said = str(busy)
                    if on_wait:
                        on_wait(said)
            except InputError:  # after a wait: a cancel that landed between the status check and the claim
                row = Deployment.get_or_none(Deployment.id == deployment_id)
                if said is None or row is None or row.status == "queued":
                    raise
                return row, None
            time.sleep(WAIT_POLL_S)
            row = Deployment.get_by_id(deployment_id)
            if row.status != "queued":
                return row, None

    # ---- running
    def run(self, deployment_id: str, from_phase: str | None = None, actor_name: str | None = None,
            resume: bool = False, on_phase=None, on_wait=None) -> str:
        """Claim and run; returns the final status. `on_phase(index, phase)` is called as each phase starts. A new
        deployment waits (queued) while another of its service runs (`on_wait(reason)`); a resume does not wait."""
        if resume:
            dep, phase = self.claim(deployment_id, from_phase, actor_name, resume)
        else:
            dep, phase = self.claim_when_free(deployment_id, actor_name, on_wait)
            if phase is None:
                return dep.status
        return self.run_claimed(dep, phase, on_phase)

    def run_claimed(self, dep: Deployment, phase: str, on_phase=None) -> str:
        service = dep.service
        control = RunControl(self.ctx, dep.id, dep.owner).start()
        job = Job(dep, service, None, control, dep.attempts)
        current_before = link_target(self.ctx.paths.current(service.name))
        try:
            job.gateway = self.ctx.hosts.gateway(dep.host)
            self._complete_missing(job, PHASES.index(phase))
            for index in range(PHASES.index(phase), len(PHASES)):
                name = PHASES[index]
                control.check()
                if on_phase:
                    on_phase(index, name)
                self._run_phase(job, name)
            control.check()
            return self._succeed(job)
        except Stop as stop:
            return self._stopped(job, stop, current_before)
        except Cancelled:
            return self._stopped(job, Stop(*(control.stop_reason or ("cancelled", "cancelled"))), current_before)
        except StoreUnavailable:  # not the deployment's fault: it stays `deploying` and is resumed (scheduler.py)
            raise
        except Exception as e:  # every failure of a phase ends the deployment failed, with one line of why
            if control.stop_reason:
                return self._stopped(job, Stop(*control.stop_reason), current_before)
            reason = one_line(e)
            if not isinstance(e, DeployerError):
                log.exception("deployment %s failed", dep.id)
            return self._fail(job, f"{Deployment.get_by_id(dep.id).phase}: {reason}", current_before)
        finally:
            control.ended()

    def _complete_missing(self, job: Job, start: int) -> None:
        """A resume from a later phase first redoes any earlier phase whose result is gone (a cleanup removed the
        release, the image was pruned, the container was removed by hand), so it never fails on a missing input."""
        dep, svc, gw = job.deployment, job.service, job.gateway
        present = {
            "PULLING_SOURCE": lambda: (self.ctx.paths.release(dep.id) / ".source-complete").exists(),
            "BUILDING": lambda: gw.image_exists(image_tag(svc.name, dep.id)),
            "COPYING_FILES": lambda: self._container(job) is not None and
            (self.ctx.paths.release(dep.id) / "release.json").exists(),
            "CREATING_SYMLINKS": lambda: link_target(self.ctx.paths.current(svc.name)) == dep.id,
            "UPDATING_ROUTES": lambda: bool((info := self._container(job)) and info.running) and
            self.ctx.router.routed([svc.name]).get(svc.name) == dep.id,
        }
        for phase in PHASES[:start]:
            job.control.check()
            if not present[phase]():
                D.event(dep.id, f"{phase} result is missing; running it again before {PHASES[start]}",
                        level="warning", host=dep.host)
                self._run_phase(job, phase)

    def _container(self, job: Job):
        """This deployment's container (ownership checked, ForeignContainer for a same-named stranger), or None."""
        return job.gateway.find_ours(container_name(job.service.name, job.deployment.id), self.ctx.store_id,
                                     job.deployment.id)

    def _run_phase(self, job: Job, phase: str) -> None:
        dep_id = job.deployment.id
        with self.ctx.store.write():
            Deployment.update(phase=phase, phase_started_at=now(), updated_at=now()).where(
                (Deployment.id == dep_id) & (Deployment.owner == job.control.owner)).execute()
            run = PhaseRun.create(deployment=dep_id, phase=phase, attempt=job.attempt)
        started = time.monotonic()
        try:
            detail = getattr(self, "_" + phase.lower())(job)
        except BaseException as e:
            metrics.observe_phase(phase, time.monotonic() - started)
            outcome = _phase_outcome(e, job.control.stop_reason)
            with self.ctx.store.write():
                PhaseRun.update(finished_at=now(), outcome=outcome, detail=str(e)[:500]).where(
                    PhaseRun.id == run.id).execute()
            raise
        metrics.observe_phase(phase, time.monotonic() - started)
        with self.ctx.store.write():
            PhaseRun.update(finished_at=now(), outcome="skipped" if detail and detail.startswith("already")
                            else "done", detail=detail).where(PhaseRun.id == run.id).execute()
            D.event(dep_id, f"{phase} {'skipped: ' + detail if detail and detail.startswith('already') else 'done'}"
                    f" in {time.monotonic() - started:.1f} s", host=job.deployment.host)

    def _fault_point(self, job: Job, phase: str) -> None:
        """Test hook: DEPLOYER_FAULT_PAUSE=PHASE:SECONDS pauses mid-phase so a fault test can kill the process there."""
        spec = os.environ.get("DEPLOYER_FAULT_PAUSE", "")
        name, _, seconds = spec.partition(":")
        if name == phase and seconds:
            D.event(job.deployment.id, f"fault pause in {phase} ({seconds} s)", level="debug")
            job.control.sleep(float(seconds))

    # ---- the six phases
    def _pulling_source(self, job: Job) -> str:
        release = self.ctx.paths.ensure(self.ctx.paths.release(job.deployment.id))
        marker, source = release / ".source-complete", release / "source"
        if marker.exists() and source.is_dir():
            return "already pulled"
        origin = Path(job.service.source)
        if not origin.is_dir():
            raise InputError(f"source {origin} of service {job.service.name} is not a directory")
        tmp = release / "source.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        if (origin / ".git").exists():
            self._git(job, ["git", "clone", "--quiet", "--depth", "1", f"file://{origin.resolve()}", str(tmp)])
            commit = subprocess.run(["git", "-C", str(tmp), "rev-parse", "--short", "HEAD"], capture_output=True,
                                    text=True, timeout=30).stdout.strip()
            detail = f"cloned {origin} at {commit}"
        else:
            shutil.copytree(origin, tmp, symlinks=True, ignore=shutil.ignore_patterns(".git"))
            detail = f"copied {origin}"
        self._fault_point(job, "PULLING_SOURCE")
        shutil.rmtree(source, ignore_errors=True)
        tmp.rename(source)
        atomic_write(marker, detail)
        return detail

    def _git(self, job: Job, argv: list[str]) -> None:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        while proc.poll() is None:
            if job.control.should_stop():
                proc.kill()
                proc.wait()
                job.control.check()
            time.sleep(0.1)
        if proc.returncode != 0:
            raise RuntimeError(f"git clone failed: {proc.stderr.read().strip().splitlines()[-1:]}")

    def _building(self, job: Job) -> str:
        dep, gw = job.deployment, job.gateway
        tag = image_tag(job.service.name, dep.id)
        labels = L.deployment_labels(self.ctx.store_id, dep.id, job.service.name, job.service.project_id)
        self._fault_point(job, "BUILDING")
        if gw.image_exists(tag):
            self._refuse_reserved_labels(job, tag, labels)
            self._set(dep.id, image=tag)
            return "already built"
        source = self.ctx.paths.release(dep.id) / "source"
        if not (source / "Dockerfile").is_file():
            raise InputError(f"no Dockerfile in the source of service {job.service.name}")
        # Build output is written in batches (50 lines or 0.5 s), and a line that arrives alone is written 0.5 s
        # later at the latest: `Step 3/4 : RUN make` shows while make runs, not when the next line comes.
        lines: list[str] = []
        lock = threading.Lock()
        timer: list[threading.Timer | None] = [None]

        in_order = threading.Lock()  # one batch written at a time, so the lines keep their order

        def flush():
            with in_order:
                with lock:
                    batch, lines[:] = list(lines), []
                    if timer[0] is not None:
                        timer[0].cancel()
                        timer[0] = None
                if batch:
                    with self.ctx.store.write():
                        DeploymentEvent.insert_many([
                            {"deployment": dep.id, "message": line[:1000], "kind": "build", "level": "debug",
                             "time": now(), "host": dep.host} for line in batch]).execute()

        def flush_later():
            try:
                flush()
            except Exception:  # noqa: BLE001 - the build goes on; the lines are written with the next batch
                log.exception("writing build output of %s", dep.id)

        def on_line(line):
            with lock:
                lines.append(line)
                full = len(lines) >= 50
                if not full and timer[0] is None:
                    timer[0] = threading.Timer(0.5, flush_later)
                    timer[0].daemon = True
                    timer[0].start()
            if full:
                flush()

        try:
            gw.build(str(source), tag, labels, on_line, job.control.should_stop)
        finally:
            flush()
        self._refuse_reserved_labels(job, tag, labels)
        self._set(dep.id, image=tag)
        return f"built {tag}"

    def _refuse_reserved_labels(self, job: Job, tag: str, ours: dict) -> None:
        """Image labels become container labels: a `deployer.*` label we did not set could change what is ours, so
        such an image is removed (our build labels win over the Dockerfile's, so it carries ours) and refused."""
        gw = job.gateway
        image_labels = gw.image_labels(tag)
        foreign = L.foreign_reserved(image_labels, ours)
        if not foreign:
            return
        if image_labels.get(L.STORE) == ours[L.STORE] and image_labels.get(L.DEPLOYMENT) == ours[L.DEPLOYMENT]:
            gw.remove_image(tag)
        raise InputError(f"the image of {job.service.name} sets {', '.join(foreign)} (its Dockerfile or a parent "
                         f"image's); deployer.* labels are reserved for deployer-console: remove them and deploy again")

    def _copying_files(self, job: Job) -> str:
        dep, svc, gw = job.deployment, job.service, job.gateway
        release = self.ctx.paths.release(dep.id)
        meta = {"deployment": dep.id, "service": svc.name, "image": image_tag(svc.name, dep.id), "port": svc.port,
                "env": sorted(svc.env or {}), "volumes": svc.volumes, "shared_volumes": svc.shared_volumes,
                "host": dep.host}
        atomic_write(release / "release.json", json.dumps(meta, indent=2, sort_keys=True))
        labels = L.deployment_labels(self.ctx.store_id, dep.id, svc.name, svc.project_id)
        mounts = []
        for vol in svc.volumes or []:
            name = deployment_volume(dep.id, vol["name"])
            gw.create_volume(name, labels)
            mounts.append((name, vol["path"]))
        for vol in svc.shared_volumes or []:
            name = shared_volume(self.ctx.store_id, svc.project_id, vol["name"])
            gw.create_volume(name, L.shared_volume_labels(self.ctx.store_id, svc.project_id, svc.name))
            mounts.append((name, vol["path"]))
        self._fault_point(job, "COPYING_FILES")
        job.control.check()
        name = container_name(svc.name, dep.id)
        existed = self._container(job) is not None
        gw.create_container(name, image_tag(svc.name, dep.id), labels, dict(svc.env or {}), svc.port, mounts)
        # a cancel that landed while the container was being created must not leave it behind: check again now
        job.control.check()
        return "already created" if existed else f"created {name} with {len(mounts)} volume(s)"

    def _creating_symlinks(self, job: Job) -> str:
        svc, dep = job.service, job.deployment
        service_dir = self.ctx.paths.ensure(self.ctx.paths.service(svc.name))
        current = self.ctx.paths.current(svc.name)
        if link_target(current) == dep.id:
            return "already current"
        old = link_target(current)
        self._fault_point(job, "CREATING_SYMLINKS")
        releases.make_current(self.ctx.paths, svc.name, dep.id, previous_id=old)
        return f"current -> {dep.id} (previous {old or '-'}) in {service_dir}"

    def _updating_routes(self, job: Job) -> str:
        """Start the container, wait until it answers its health path directly, only then switch the route to it:
        a request never reaches a container that does not answer yet (a failure here leaves the old route)."""
        svc, dep, gw = job.service, job.deployment, job.gateway
        info = self._container(job)
        if info is None:
            raise RuntimeError(f"container {container_name(svc.name, dep.id)} is missing; resume from COPYING_FILES")
        started = False
        if not info.running:
            gw.start(info)
            started = True
        self._fault_point(job, "UPDATING_ROUTES")
        answered = wait_healthy(gw, info, svc.port, svc.health_path, self.ctx.settings.pipeline.health_timeout,
                                job.control.check, job.control.sleep)
        job.control.check()
        routed = releases.route(self.ctx, svc, dep.id, gw, info)
        return f"{'started container, ' if started else 'already running, '}{answered}; {routed}"

    def _health_check(self, job: Job) -> str:
        """End to end: through the proxy when the router runs one (the request a client sends, answered by this
        deployment), else the container directly."""
        svc, dep, gw = job.service, job.deployment, job.gateway
        self._fault_point(job, "HEALTH_CHECK")
        info = self._container(job)
        if info is None:
            raise RuntimeError(f"container {container_name(svc.name, dep.id)} is missing; resume from COPYING_FILES")
        if self.ctx.router.proxy_check is None:
            return wait_healthy(gw, info, svc.port, svc.health_path, self.ctx.settings.pipeline.health_timeout,
                                job.control.check, job.control.sleep)
        return wait_through_proxy(self.ctx.router, route_for(gw, svc, dep.id, info), svc.health_path,
                                  self.ctx.settings.pipeline.health_timeout, job.control.check, job.control.sleep)

    # ---- endings
    def _set(self, deployment_id: str, **fields):
        with self.ctx.store.write():
            Deployment.update(updated_at=now(), **fields).where(Deployment.id == deployment_id).execute()

    def _succeed(self, job: Job) -> str:
        dep, svc = job.deployment, job.service
        with self.ctx.store.write():
            D.move(self.ctx.store, dep.id, "success", expect={"deploying"}, phase="HEALTH_CHECK",
                   message=f"Deployment {dep.id} succeeded")
            older = list(Deployment.select().where((Deployment.service == svc.id) & (Deployment.id != dep.id) &
                                                   (Deployment.status.in_(D.SERVING))))
            for old in older:
                D.move(self.ctx.store, old.id, "superseded", message=f"Deployment {old.id} superseded by {dep.id}")
        if older:  # requests the proxy sent to the superseded container before the switch finish first
            time.sleep(float(self.ctx.settings.routes.drain_seconds))
        for old in older:
            self.stop_service_container(svc, old.id, old.host)
        if older:
            from console.engine.cleanup import queue_release_retention  # cleanup imports this module
            queue_release_retention(self.ctx, svc)
        return "success"

    def stop_service_container(self, svc: Service, deployment_id: str, host: str) -> None:
        try:
            gw = self.ctx.hosts.gateway(host)
            info = gw.find_ours(container_name(svc.name, deployment_id), self.ctx.store_id, deployment_id)
            if info is not None and info.running:
                gw.stop(info)
                D.event(deployment_id, f"Stopped container {info.name} of superseded deployment {deployment_id}",
                        host=host)
        except Exception as e:  # stopping an old container is best effort; reconciliation will report drift
            D.event(deployment_id, f"Could not stop the container of {deployment_id}: {e}", level="warning",
                    host=host)

    def _restore(self, job: Job, current_before: str | None) -> None:
        """Put back what served before this run (releases.restore); a failure is logged, the run ends all the same."""
        try:
            releases.restore(self.ctx, job.deployment, current_before)
        except Exception:
            log.exception("restoring previous release of %s", job.service.name)

    def _fail(self, job: Job, reason: str, current_before: str | None) -> str:
        self._restore(job, current_before)
        try:
            D.move(self.ctx.store, job.deployment.id, "failed", error=reason, expect={"deploying"},
                   cleanup_delay=self.ctx.settings.cleanup.cleanup_delay)
        except InputError:
            return Deployment.get_by_id(job.deployment.id).status
        notify.deployment_failed(job.deployment.id, job.service.name, job.deployment.host, reason)
        return "failed"

    def _stopped(self, job: Job, stop: Stop, current_before: str | None) -> str:
        dep = job.deployment
        if stop.why == "deadline":
            return self._fail(job, stop.args[0], current_before)
        if stop.why == "taken-over":
            D.event(dep.id, f"Pipeline in {D.MACHINE}:{os.getpid()} stopped: {stop.args[0]}", level="warning")
            return Deployment.get_by_id(dep.id).status
        self._restore(job, current_before)
        # Nothing is removed here: the cleanup task does it (logs archived first, events, cleanup_delay). It waits
        # until this pipeline has ended (its heartbeat is cleared), so a container created just as the cancel
        # landed is listed and removed with the rest.
        D.event(dep.id, f"Pipeline stopped: {stop.args[0]}", level="warning", host=dep.host)
        return Deployment.get_by_id(dep.id).status
