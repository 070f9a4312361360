"""Live stats: the CPU of an idle follower console with 10 running containers on screen, with live stats on and off,
measured side by side over the same window; the difference is what the streams cost next to the idle figure.

Two consoles run at once as whole processes (Textual headless at 160x45, the embedded runtime hosted, so each is a
follower: the lease is held by this bench process, alive, until the end) over one SQLite store seeded with the
showcase and 10 deployments whose containers really run (`sleep`, our labels) on the machine's Docker engine. Each
console opens the all-containers view, so the 10 are on screen; one has `[console] stats` on (a stream per running
container), the other off. After a warm-up, utime+stime of each process is read from /proc/PID/stat at the start and
the end of the same window (BENCH_STATS_S, 60 s by default). Each console reports how many streams are live, so a
run where the streams did not start cannot pass for a cheap one.
"""
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

try:
    from bench import benchlib as B
except ModuleNotFoundError:  # run as `python bench/stats_bench.py`
    import benchlib as B

ROOT = Path(__file__).resolve().parents[1]
WINDOW_S = float(os.environ.get("BENCH_STATS_S", "60"))
CONTAINERS = int(os.environ.get("BENCH_STATS_CONTAINERS", "10"))
WARMUP_S = 12.0
SIZE = (160, 45)
CLK_TCK = os.sysconf("SC_CLK_TCK")

NOTES = ("CPU % is of one core (100 % = one core busy), utime+stime of the console process (its UI thread, poll "
         "workers, runtime threads and, with stats on, one thread per stream). The Docker engine's own work to "
         "produce the samples is not in these figures.",
         "The leader is this bench process holding the lease row (alive, on this machine), so both consoles stay "
         "followers; nothing deploys while they are measured.")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK     # utime, stime (fields 14 and 15 of stat)


# ---- the console process (python bench/stats_bench.py --console): headless, all containers on screen
def console_main() -> None:
    from console import config
    from console.engine.core import Engine
    from console.tui.app import DeployerConsole

    status_file = Path(os.environ["BENCH_STATS_STATUS"])

    class BenchConsole(DeployerConsole):
        def on_mount(self) -> None:    # Textual runs DeployerConsole.on_mount too (handlers follow the MRO)
            self.set_timer(2.0, self._all_containers)
            self.set_interval(5.0, self._report)

        def _all_containers(self) -> None:
            if not self.main.show_all_containers:
                self.main.action_containers()

        def _report(self) -> None:
            hub = self.engine.__dict__.get("stats")
            table = self.main.query_one("#containers")
            status_file.write_text(json.dumps({"live": len(hub.live()) if hub else 0, "rows": table.row_count,
                                               "role": (self.main.status or {}).get("role")}))

    engine = Engine(config.load())
    try:
        BenchConsole(engine).run(headless=True, size=SIZE)
    finally:
        engine.close()


# ---- the bench
def _setup(engine, client) -> list[str]:
    from console.engine import deployments as D
    from console.engine import labels as L
    from console.engine.lease import LEASE_NAME
    from storage.models import Deployment, Lease, Service
    from tests.fixtures.seed import seed
    at = time.time()
    seed(engine.store, at=at)
    web = Service.get(Service.name == "web")
    ids = [f"{0xb0000000000 + i:012x}" for i in range(CONTAINERS)]
    with engine.store.write():
        Deployment.insert_many([{"id": i, "service": web.id, "status": "superseded", "phase": "HEALTH_CHECK",
                                 "host": "local", "created_at": at - 7200 - n, "updated_at": at - 7000,
                                 "started_at": at - 7200 - n, "finished_at": at - 7180 - n, "attempts": 0}
                                for n, i in enumerate(ids)]).execute()
        # this process leads for the whole run: alive here, the lease far from expiring
        Lease.update(holder="bench-leader", holder_machine=D.MACHINE, holder_pid=os.getpid(),
                     renewed_at=at, expires_at=at + 86400).where(Lease.name == LEASE_NAME).execute()
    for i in ids:
        client.containers.run("deployer/base:busybox", ["sleep", "3600"], detach=True, name=f"deployer-web-{i}",
                              labels=L.deployment_labels(engine.store_id, i, "web", web.project_id))
    return ids


def _start(data_dir: str, stats: bool, status: Path) -> subprocess.Popen:
    env = dict(os.environ, DEPLOYER_DATA_DIR=data_dir, DEPLOYER_STATS="true" if stats else "false",
               BENCH_STATS_STATUS=str(status), PYTHONPATH=str(ROOT), TERM="xterm-256color")
    return subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--console"], env=env, cwd=str(ROOT),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _status(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def run() -> list[dict]:
    client = B.docker_client()
    with B.temp_engine() as engine:
        _setup(engine, client)
        data_dir = str(engine.settings.data_dir)
        tmp = Path(tempfile.mkdtemp(prefix="deployer-stats-bench-"))
        procs = {}
        try:
            for name, stats in (("off", False), ("on", True)):
                procs[name] = (_start(data_dir, stats, tmp / f"{name}.json"), tmp / f"{name}.json")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if all(p.poll() is not None for p, _ in procs.values()):
                    break
                on = _status(procs["on"][1])
                if on.get("live") == CONTAINERS and _status(procs["off"][1]).get("rows"):
                    break
                time.sleep(0.5)
            for name, (p, _) in procs.items():
                if p.poll() is not None:
                    raise RuntimeError(f"console (stats {name}) exited {p.returncode}: "
                                       f"{p.stderr.read().decode()[-400:]}")
            time.sleep(WARMUP_S)       # first polls, dialogs built, streams settled
            B.log(f"stats bench: measuring both consoles for {WINDOW_S:.0f} s")
            t0 = time.monotonic()
            c0 = {name: cpu_seconds(p.pid) for name, (p, _) in procs.items()}
            time.sleep(WINDOW_S)
            c1 = {name: cpu_seconds(p.pid) for name, (p, _) in procs.items()}
            wall = time.monotonic() - t0
            seen = {name: _status(path) for name, (_, path) in procs.items()}
        finally:
            for p, _ in procs.values():
                p.terminate()
            for p, _ in procs.values():
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)
    pct = {name: (c1[name] - c0[name]) / wall * 100 for name in c0}
    cost = pct["on"] - pct["off"]
    live = seen["on"].get("live", 0)
    note = f"{CONTAINERS} running containers on screen, {wall:.0f} s window, measured side by side"
    return [
        B.info("stats: idle follower CPU, stats off", round(pct["off"], 2), "% of a core", note),
        B.info("stats: idle follower CPU, stats on", round(pct["on"], 2), "% of a core",
               f"{live} streams live; role {seen['on'].get('role')}"),
        B.info("stats: cost of the streams (on - off)", round(cost, 2), "% of a core",
               f"{cost / max(1, live):.2f} % per stream"),
        B.row("stats: a stream per running container on screen", live, "streams", f"= {CONTAINERS}",
              live == CONTAINERS and seen["off"].get("live", 0) == 0,
              f"stats off: {seen['off'].get('live', 0)} streams"),
    ]


if __name__ == "__main__":
    if "--console" in sys.argv:
        console_main()
    else:
        sys.exit(B.main(run, "stats bench"))
