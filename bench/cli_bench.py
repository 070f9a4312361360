"""CLI start-up: `deployer-console ls --json` and `status --json` against `docker ps`, run in turn as whole processes.

Each pair (ours, then `docker ps`) runs back to back, so the ratio of a pair compares like with like even when the
machine's speed drifts; the median of the pairs' ratios is the figure. The store is a fresh SQLite file in a temporary
data dir with a few deployments, the Docker host the machine's own engine (what `docker ps` asks too).
"""
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import benchlib as B
from tests.cli import CLI

ROOT = Path(__file__).resolve().parents[1]
PAIRS = 15
WARMUP = 2
TARGET_RATIO = 4.0

# the start-up no read command can go below: the interpreter alone, and with the two libraries every command loads
# (peewee without other databases' drivers, as a command on a SQLite store loads it)
FLOORS = (("python -c pass", "pass"),
          ("python -c 'import click, peewee'", "import storage; storage.sqlite_only('x.db'); import click, peewee"))

NOTES = ("Wall-clock time of whole processes (fork to exit), the environment's Python and the installed "
         "`deployer-console` entry point; `status --json` asks every Docker host now, as the command does. The "
         "commands take the quick path (console/quick.py: standard library only); the full CLI's figures "
         "(DEPLOYER_QUICK=0: click, peewee, the engine) are beside them for context.")


def _wall(argv: list[str], env: dict) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[-2:])} exited {done.returncode}: {done.stderr.decode()[-300:]}")
    return wall


def _paired(ours: list[str], theirs: list[str], env: dict) -> tuple[list[float], list[float]]:
    for _ in range(WARMUP):
        _wall(ours, env), _wall(theirs, env)
    a, b = [], []
    for _ in range(PAIRS):
        a.append(_wall(ours, env))
        b.append(_wall(theirs, env))
    return a, b


def _seeded_data_dir() -> Path:
    from console.engine.core import Engine
    from tests.conftest import make_settings
    from tests.fixtures.seed import seed
    data = Path(tempfile.mkdtemp(prefix="cli-bench-")) / "data"
    engine = Engine(make_settings(data))
    try:
        seed(engine.store, extra=20, at=time.time())
    finally:
        engine.close()
    return data


def run() -> list[dict]:
    docker = shutil.which("docker")
    if docker is None:
        return [B.row("docker ps", "missing", note="the docker CLI is not on PATH: nothing to compare with")]
    data = _seeded_data_dir()
    # compiled modules cached as an installed program has them (written during the warm-up, outside the tree)
    env = dict(os.environ, PYTHONPATH=str(ROOT), DEPLOYER_DATA_DIR=str(data), DEPLOYER_CONFIG=str(data / "none.toml"),
               PYTHONPYCACHEPREFIX=str(data.parent / "pycache"))
    for name in ("DEPLOYER_DB", "PYTHONDONTWRITEBYTECODE"):
        env.pop(name, None)
    rows = []
    try:
        for command in (["ls", "--json"], ["status", "--json"]):
            ours, theirs = _paired(CLI + command, [docker, "ps"], env)
            ratios = [x / y for x, y in zip(ours, theirs)]
            label = f"deployer-console {' '.join(command)}"
            rows.append(B.at_most(f"{label} / docker ps, wall, median of {PAIRS} pairs",
                                  round(statistics.median(ratios), 2), TARGET_RATIO, "×",
                                  f"ours {statistics.median(ours) * 1000:.0f} ms, docker ps "
                                  f"{statistics.median(theirs) * 1000:.0f} ms (medians); ratios "
                                  f"{min(ratios):.1f}-{max(ratios):.1f}"))
        # context: the same commands through the full CLI (what they cost before the quick path)
        full_env = dict(env, DEPLOYER_QUICK="0")
        for command in (["ls", "--json"], ["status", "--json"]):
            ours, theirs = _paired(CLI + command, [docker, "ps"], full_env)
            ratios = [x / y for x, y in zip(ours, theirs)]
            rows.append(B.info(f"full CLI (DEPLOYER_QUICK=0) {' '.join(command)} / docker ps, median of {PAIRS} pairs",
                               round(statistics.median(ratios), 2), "×",
                               f"{statistics.median(ours) * 1000:.0f} ms vs {statistics.median(theirs) * 1000:.0f} ms"))
        # context: what any Python command, and one that parses with click and reads with peewee, costs here
        for label, code in FLOORS:
            ours, theirs = _paired([sys.executable, "-c", code], [docker, "ps"], env)
            ratios = [x / y for x, y in zip(ours, theirs)]
            rows.append(B.info(f"floor: {label} / docker ps, wall, median of {PAIRS} pairs",
                               round(statistics.median(ratios), 2), "×",
                               f"{statistics.median(ours) * 1000:.0f} ms vs {statistics.median(theirs) * 1000:.0f} ms"))
    finally:
        shutil.rmtree(data.parent, ignore_errors=True)
    return rows


if __name__ == "__main__":
    sys.exit(B.main(run, "CLI start-up"))
