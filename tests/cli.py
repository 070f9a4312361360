"""The CLI as the tests run it: the installed `deployer-console` (or `python -m console.cli` where it is not
installed), the environment it runs in, and one call that runs it. Every test that starts the CLI as a process uses
these, so a change to how the CLI is found or which variables reach it is made once."""
import os
import subprocess
import sys
from pathlib import Path

CLI = [str(Path(sys.executable).with_name("deployer-console"))]
if not Path(CLI[0]).exists():
    CLI = [sys.executable, "-m", "console.cli"]


def cli_env(where=None, *, hermetic: bool = False, **variables) -> dict:
    """The environment for a CLI process: this process's (with `hermetic`, none of its DEPLOYER_* variables), never
    read-only unless asked, pointed at the store of `where` (an Engine or Settings: its data dir and, on PostgreSQL,
    its DEPLOYER_DB; a path: that data dir, no DEPLOYER_DB), then `variables` (a value of None unsets that one)."""
    env = {k: v for k, v in os.environ.items() if not (hermetic and k.startswith("DEPLOYER_"))}
    env.pop("DEPLOYER_READ_ONLY", None)
    settings = getattr(where, "settings", where)
    if hasattr(settings, "data_dir"):
        env["DEPLOYER_DATA_DIR"] = str(settings.data_dir)
        if settings.store.db:
            env["DEPLOYER_DB"] = settings.store.db
    elif where is not None:
        env["DEPLOYER_DATA_DIR"] = str(where)
        env.pop("DEPLOYER_DB", None)
    for name, value in variables.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = str(value)
    return env


def run_cli(args, env: dict, timeout: float = 120, input: str | None = None) -> subprocess.CompletedProcess:
    """`deployer-console ARGS` to the end: exit code, stdout and stderr as text; `input` on its stdin if given."""
    return subprocess.run(CLI + [str(a) for a in args], env=env, capture_output=True, text=True, timeout=timeout,
                          input=input)
