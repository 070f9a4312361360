"""Failover between machines, not only between processes (issue 15, item 4).

Three network namespaces this test makes itself: `db` runs the PostgreSQL server (a private cluster of this test),
`m1` and `m2` are two "machines", each with its own host name (a UTS namespace: `D.MACHINE` differs, so the pid proof
a same-machine follower uses does not apply) and its own veth link to `db` (10.77.x.0/24, addresses of these
namespaces only). An engine runs on each. Cutting the leader's link: the other engine leads by lease expiry within
15 s, and the cut one, back on the network, is a follower. SIGKILL of that leader: the first one leads again by
expiry. The job-run records prove that no two engines ran jobs at once.
"""
import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest

from storage.clock import now
from storage.models import DeploymentEvent, JobRun, Lease
from tests.cli import CLI
from tests.conftest import make_settings, wait_for
from tests.pgcluster import Cluster
from tests.reliability import fast_env, stop_all

pytestmark = [pytest.mark.postgres_only, pytest.mark.slow]


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


class Net:
    def __init__(self):
        tag = os.getpid() % 100000
        self.ns = {"db": f"fodb{tag}", "m1": f"fom1{tag}", "m2": f"fom2{tag}"}
        self.link = {"m1": f"fo1m{tag}", "m2": f"fo2m{tag}"}      # the machine's end of its veth pair
        self.addr = {"m1": ("10.77.1.1", "10.77.1.2"), "m2": ("10.77.2.1", "10.77.2.2")}   # (db side, machine)

    def up(self) -> None:
        for ns in self.ns.values():
            ip("netns", "add", ns)
            ip("-n", ns, "link", "set", "lo", "up")
        for m in ("m1", "m2"):
            peer = self.link[m].replace("m", "d", 1)
            ip("link", "add", self.link[m], "type", "veth", "peer", "name", peer)
            ip("link", "set", self.link[m], "netns", self.ns[m])
            ip("link", "set", peer, "netns", self.ns["db"])
            db_addr, m_addr = self.addr[m]
            ip("-n", self.ns["db"], "addr", "add", f"{db_addr}/24", "dev", peer)
            ip("-n", self.ns[m], "addr", "add", f"{m_addr}/24", "dev", self.link[m])
            ip("-n", self.ns["db"], "link", "set", peer, "up")
            ip("-n", self.ns[m], "link", "set", self.link[m], "up")

    def cut(self, m: str, up: bool = False) -> None:
        ip("-n", self.ns[m], "link", "set", self.link[m], "up" if up else "down")

    def down(self) -> None:
        for ns in self.ns.values():
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


def _leader() -> tuple[str, int] | None:
    row = Lease.get_or_none(Lease.name == "engine")
    if row is None or not row.expires_at or row.expires_at <= now():
        return None
    return row.holder_machine, row.holder_pid


JOBS = {"dispatch", "cleanup", "reconcile"}


def _jobs_run(where) -> set[str]:
    """The jobs with a run matching `where` (idle runs of a job share one row: jobs, not a number of rows)."""
    return {r.job for r in JobRun.select(JobRun.job).where(where)}


def _runs_by_holder_after(t: float) -> list[tuple[float, str]]:
    return [(r.started_at, r.holder) for r in JobRun.select().where(JobRun.started_at >= t).order_by(JobRun.started_at)]


def test_two_machines_fail_over_by_lease_expiry_and_never_lead_at_once(tmp_path):
    net, cluster = Net(), Cluster("failover")
    procs = []
    try:
        net.up()
        url = cluster.url()                                   # created on 127.0.0.1, then moved into `db`
        db, password = url.rsplit("/", 1)[1], url.split(":")[2].split("@")[0]
        cluster.ctl("-m", "fast", "stop")
        with open(cluster.dir / "data" / "pg_hba.conf", "a") as f:
            f.write("host all all 10.77.0.0/16 scram-sha-256\n")
        listen = ",".join(a[0] for a in net.addr.values())
        cluster.ctl("-o", f"-c listen_addresses='{listen}'", "start", netns=net.ns["db"])
        # this test's own view of the store goes through the server's unix socket (no route into `db` needed)
        local = f"postgresql://deployer@/{db}?host={cluster.dir / 'sock'}&port={cluster.port}"
        from console.engine.core import Engine
        engine = Engine(make_settings(tmp_path / "view", db=local))
        by_machine = {}
        for m in ("m1", "m2"):
            settings = make_settings(tmp_path / m, db=f"postgresql://deployer:{password}@{net.addr[m][0]}:"
                                                      f"{cluster.port}/{db}?connect_timeout=3")
            env = fast_env(settings)
            log = open(tmp_path / f"{m}.log", "ab")
            proc = subprocess.Popen(["nsenter", f"--net=/var/run/netns/{net.ns[m]}", "unshare", "--uts", "sh", "-c",
                                     f"hostname {m} && exec {shlex.join(CLI)} engine"], env=env, stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
            procs.append(proc)
            by_machine[m] = proc
        first = wait_for(_leader, timeout=30, what="an engine to lead")[0]
        other = "m2" if first == "m1" else "m1"
        wait_for(lambda: _jobs_run(JobRun.holder.startswith(f"{first}:")) >= JOBS, timeout=15,
                 what="the first leader's job runs")

        net.cut(first)                                        # the leader's machine drops off the network
        cut_at = now()
        wait_for(lambda: (_leader() or ("",))[0] == other, timeout=15, what="the other machine to lead (≤ 15 s)")
        took_over = now() - cut_at
        wait_for(lambda: _jobs_run(JobRun.holder.startswith(f"{other}:") & (JobRun.started_at >= cut_at)) >= JOBS,
                 timeout=10, what="the new leader's job runs")
        net.cut(first, up=True)                               # back on the network: it must follow, not act
        time.sleep(3.0)
        assert _leader()[0] == other

        by_machine[other].send_signal(signal.SIGKILL)         # the new leader dies: no pid proof across machines
        by_machine[other].wait(10)
        killed_at = now()
        wait_for(lambda: (_leader() or ("",))[0] == first, timeout=15, what="the first machine to lead again")
        retaken = now() - killed_at
        time.sleep(1.5)

        runs = _runs_by_holder_after(0)
        order = []
        for _, holder in runs:                               # the holders in start order, runs of one collapsed
            if not order or order[-1] != holder:
                order.append(holder)
        machines = [h.split(":")[0] for h in order]
        assert machines == [first, other, first], f"job runs interleaved between machines: {machines}"
        assert took_over < 15.0 and retaken < 15.0, (took_over, retaken)
        takeovers = [e.message for e in DeploymentEvent.select().where(DeploymentEvent.message.contains("took over"))]
        assert takeovers and all("expired" in m for m in takeovers), takeovers
        engine.close()
    finally:
        stop_all(procs)
        cluster.down()
        net.down()
        for m in ("m1", "m2"):
            log = Path(tmp_path / f"{m}.log")
            if log.exists():
                print(f"--- {m}\n" + log.read_text()[-3000:])
