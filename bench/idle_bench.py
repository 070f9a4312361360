"""What an idle console costs: the CPU of real `deployer-console` processes, each on a terminal of its own (a pty,
160×45), over the same IDLE_S seconds, read from /proc/PID/stat (utime + stime, the process's every thread),
beside a bare Textual app on a pty of its own measured over the same window (the yardstick: what the toolkit costs
doing nothing).

Two stores, nothing changing in either: store A holds 4 finished deployments and two consoles, the leader (the first
to start, hosting its engine's jobs: dispatch and cleanup every second, reconcile every 15 s, the lease every 2 s)
and a follower; store B holds 10,000 finished deployments, a headless `deployer-console engine` as its leader (not
measured) and a follower console. All of them run at once, so the figures share one window and one machine load.
Targets (issue 14): follower with 4 deployments ≤ 1 % of a core, leader ≤ 2 %, follower with 10,000 ≤ 3 %.
BENCH_IDLE_SECONDS (default 60) changes the window.
"""
import contextlib
import fcntl
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path

try:
    from bench import benchlib as B
except ModuleNotFoundError:  # run as `python bench/idle_bench.py`
    import benchlib as B

IDLE_S = float(os.environ.get("BENCH_IDLE_SECONDS", "60"))
SETTLE_S = 8.0          # after start: first paint, dialogs built, the leader's first jobs
BIG = 10_000
TICKS = os.sysconf("SC_CLK_TCK")
ROOT = Path(__file__).resolve().parents[1]

BARE = """
from textual.app import App
from textual.widgets import Footer, Static
class Bare(App):
    def compose(self):
        yield Static("hello")
        yield Footer()
Bare().run()
"""


def cpu_ticks(pid: int) -> int:
    """utime + stime of a process (every thread), in clock ticks."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


class PtyProcess:
    """A process on a pty of its own whose output is read (and thrown away) by a thread of the bench."""

    def __init__(self, name: str, args: list[str], env: dict, cols: int = 160, rows: int = 45):
        self.name = name
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=str(ROOT),
                                     start_new_session=True, close_fds=True)
        os.close(slave)
        self.master = master
        self.bytes = 0
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                return
            if not chunk:
                return
            self.bytes += len(chunk)

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                os.write(self.master, b"q")     # the console quits on q (nothing in flight: no question)
            try:
                self.proc.wait(8)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(8)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(5)
        with contextlib.suppress(OSError):
            os.close(self.master)


def seed_store(data_dir: Path, extra: int) -> None:
    """4 finished deployments (success, superseded, failed and cancelled with their cleanup done), and `extra` old
    finished ones, written by a plain Engine that then closes."""
    from console.config import load
    from console.engine.core import Engine
    from storage.clock import now
    from storage.models import CleanupTask, Deployment, Project, Service
    from tests.fixtures.seed import seed_history
    engine = Engine(load(data_dir=str(data_dir), metrics_listen=""))
    try:
        t = now()
        with engine.store.write():
            project, _ = Project.get_or_create(name="demo")
            svc = Service.create(name="web", project=project, source="/nonexistent")
            rows = [{"id": f"{0xa00000000000 + i:012x}", "service": svc.id, "status": status, "phase": "HEALTH_CHECK",
                     "host": "local", "created_at": t - 3600 * (4 - i), "updated_at": t - 3600 * (4 - i) + 30,
                     "started_at": t - 3600 * (4 - i) + 1, "finished_at": t - 3600 * (4 - i) + 30}
                    for i, status in enumerate(("cancelled", "failed", "superseded", "success"))]
            Deployment.insert_many(rows).execute()
            CleanupTask.insert_many([{"deployment": r["id"], "reason": r["status"], "state": "done",
                                      "due_at": r["finished_at"], "created_at": r["finished_at"],
                                      "updated_at": r["finished_at"], "finished_at": r["finished_at"]}
                                     for r in rows if r["status"] in ("failed", "cancelled")]).execute()
        if extra:
            seed_history(engine.store, extra, at=t)
            # a store in its steady state: every old deployment's cleanup ran (else the leader's retention and
            # cleanup jobs would be busy for minutes: not idle)
            old = list(Deployment.select(Deployment.id, Deployment.status, Deployment.updated_at)
                       .where(Deployment.id.not_in([r["id"] for r in rows])).tuples())
            tasks = [{"deployment": i, "reason": status, "state": "done", "due_at": u, "created_at": u + 5,
                      "updated_at": u + 5, "finished_at": u + 5} for i, status, u in old]
            with engine.store.write():
                for k in range(0, len(tasks), 500):
                    CleanupTask.insert_many(tasks[k:k + 500]).execute()
    finally:
        engine.close()


def console_env(data_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOYER_")}
    env.update(DEPLOYER_DATA_DIR=str(data_dir), DEPLOYER_METRICS_LISTEN="", TERM="xterm-256color",
               COLORTERM="truecolor", PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""), TZ="UTC")
    return env


CLI = [sys.executable, "-c", "from console.cli import main; main()"]


def wait_for_leader(data_dir: Path, holder_pid: int, timeout: float = 30.0) -> bool:
    """Whether the process `holder_pid` holds store's lease within `timeout` (read with sqlite3: no engine here)."""
    import sqlite3
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with contextlib.suppress(sqlite3.Error):
            con = sqlite3.connect(f"file:{data_dir / 'deployer.db'}?mode=ro", uri=True, timeout=5)
            try:
                row = con.execute("SELECT holder_pid, expires_at FROM lease").fetchone()
            finally:
                con.close()
            if row and row[0] == holder_pid and row[1] > time.time():
                return True
        time.sleep(0.2)
    return False


def run() -> list[dict]:
    tmp = Path(tempfile.mkdtemp(prefix="deployer-idlebench-"))
    procs: list[PtyProcess] = []
    engine_proc = None
    try:
        small, big = tmp / "small", tmp / "big"
        B.log(f"seeding two stores (4 and {BIG:,} deployments)")
        seed_store(small, 0)
        seed_store(big, BIG)
        leader = PtyProcess("leader, 4 deployments", CLI, console_env(small))
        procs.append(leader)
        led = wait_for_leader(small, leader.proc.pid)
        engine_proc = subprocess.Popen(CLI + ["engine", "--log-level", "warning"], env=console_env(big),
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=str(ROOT))
        big_led = wait_for_leader(big, engine_proc.pid)
        follower = PtyProcess("follower, 4 deployments", CLI, console_env(small))
        follower_big = PtyProcess(f"follower, {BIG:,} deployments", CLI, console_env(big))
        bare = PtyProcess("bare Textual app", [sys.executable, "-c", BARE], console_env(small))
        procs += [follower, follower_big, bare]
        time.sleep(SETTLE_S)
        load_start = B.load_note()
        before = {p.name: cpu_ticks(p.proc.pid) for p in procs}
        t0 = time.monotonic()
        time.sleep(IDLE_S)
        elapsed = time.monotonic() - t0
        after = {p.name: cpu_ticks(p.proc.pid) for p in procs}
        load_end = B.load_note()
        dead = [p.name for p in procs if p.proc.poll() is not None]
        if dead:
            raise RuntimeError(f"exited during the window: {', '.join(dead)}")
        pct = {n: (after[n] - before[n]) / TICKS / elapsed * 100 for n in before}
        window = f"{elapsed:.0f} s window, all at once; {load_start} at start, {load_end} at end"
        yard = pct["bare Textual app"]
        rows = []
        for p, limit in ((follower, 1.0), (leader, 2.0), (follower_big, 3.0)):
            v = pct[p.name]
            role_ok = "" if (p is not leader or led) and (p is not follower_big or big_led) else \
                " (the lease was NOT taken as planned: role unsure)"
            rows.append(B.at_most(f"idle console CPU, {p.name}", round(v, 2), limit, "%",
                                  f"{v / yard:.1f}× the bare Textual app ({yard:.2f} %); "
                                  f"{after[p.name] - before[p.name]} ticks of 1/{TICKS} s; {p.bytes:,} bytes drawn in "
                                  f"all{role_ok}"))
        rows.append(B.info("idle CPU of a bare Textual app on a pty (yardstick)", round(yard, 2), "%", window))
        return rows
    finally:
        for p in procs:
            p.stop()
        if engine_proc is not None and engine_proc.poll() is None:
            engine_proc.send_signal(signal.SIGTERM)
            try:
                engine_proc.wait(10)
            except subprocess.TimeoutExpired:
                engine_proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(B.main(run, "idle console CPU (issue 14)"))
