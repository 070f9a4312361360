"""Bad input (issue 6): property tests over deployment ids, service names, host names (label values and filters),
phase names and CLI arguments. Every one ends in one line on stderr, exit code 2, no traceback, and the store exactly
as it was. Names and ids are checked against allow-lists before they reach a label filter, a path or a container
name: nothing lands outside the data directory and no Docker label filter carries an unvalidated value.

The CLI runs in-process through `console.cli.main` (the real entry point: argv in, exit code out) so that hundreds
of examples stay under a minute; a few awkward arguments also go through the installed `deployer-console` binary."""
import contextlib
import io
import re
import signal
import sys
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, assume, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from console.cli import main
from console.engine import deployments as D
from console.engine import validate
from console.engine.docker_gateway import Gateway
from console.engine.errors import InputError
from console.engine.paths import Paths
from storage.models import MODELS, database
from tests.cli import cli_env, run_cli

FUZZ = hsettings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
FULL_ID = re.compile(r"[0-9a-f]{12}")


def run_main(args: list[str]) -> tuple[int, str, str]:
    """deployer-console ARGS in this process: (exit code, stdout, stderr). The store binding is restored after."""
    previous, sigterm = database.obj, signal.getsignal(signal.SIGTERM)
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
            mock.patch.object(sys, "argv", ["deployer-console", *args]):
        try:
            main()
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        finally:
            database.initialize(previous)
            signal.signal(signal.SIGTERM, sigterm)  # main() turns SIGTERM into Ctrl-C for its own process
    return code, out.getvalue(), err.getvalue()


def dump() -> list:
    return [sorted(map(repr, m.select().tuples())) for m in MODELS]


@pytest.fixture
def world(engine, service_dir):
    """A store with a service and a deployment in each kind of status; no Docker work needed."""
    engine.add_service("web", str(service_dir))
    queued = engine.create_deployment("web")
    failed = engine.create_deployment("web")
    D.move(engine.store, failed.id, "failed", error="BUILDING: boom")
    cancelled = engine.create_deployment("web")
    D.move(engine.store, cancelled.id, "cancelled")
    ids = [queued.id, failed.id, cancelled.id]
    base = ["--data-dir", str(engine.settings.data_dir)]
    outside_before = {p for p in engine.settings.data_dir.parent.iterdir()}
    yield {"engine": engine, "ids": ids, "base": base, "failed": failed.id, "source": str(service_dir)}
    assert {p for p in engine.settings.data_dir.parent.iterdir()} == outside_before, \
        "something was created beside the data directory"


def assert_refused(world, args, before):
    code, out, err = run_main(world["base"] + args)
    lines = err.strip().splitlines()
    assert code == 2, (args, code, out, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), (args, err)
    assert "Traceback" not in err + out, (args, err)
    assert out == "", (args, out)
    assert dump() == before, f"{args} changed the store"


def not_an_existing_id(world, value: str) -> bool:
    return not (validate.DEPLOYMENT_RE.fullmatch(value) and any(i.startswith(value) for i in world["ids"]))


ARG = st.text(max_size=40).filter(lambda s: s not in ("--help", "--version"))


@FUZZ
@given(value=ARG, command=st.sampled_from(["show", "cancel", "resume", "rollback-to"]))
def test_any_bad_or_unknown_deployment_id_is_refused(world, value, command):
    assume(not_an_existing_id(world, value))
    before = dump()
    args = ["rollback", "web", "--to", value] if command == "rollback-to" else [command, value]
    assert_refused(world, args, before)


@FUZZ
@given(value=ARG, command=st.sampled_from(["service-add", "deploy", "ls", "rollback"]))
def test_any_bad_or_unknown_service_name_is_refused(world, value, command):
    assume(value != "web")
    if command in ("service-add", "ls"):
        assume(not validate.SERVICE_RE.fullmatch(value))
    before = dump()
    args = {"service-add": ["service", "add", value, "--source", world["source"]],
            "deploy": ["deploy", value], "ls": ["ls", "--service", value],
            "rollback": ["rollback", value]}[command]
    assert_refused(world, args, before)


@FUZZ
@given(value=ARG, command=st.sampled_from(["ls", "containers", "service-host", "project", "volume", "env"]))
def test_bad_host_project_volume_and_env_values_are_refused(world, value, command):
    """The values that become label values or filters (host, project), paths (volume) or the environment."""
    if command in ("ls", "project"):
        assume(not validate.HOST_RE.fullmatch(value))
    if command == "volume":
        assume(not re.fullmatch(r"[a-z][a-z0-9_-]{0,39}:/[^:]*", value) or ".." in value)
    if command == "env":
        assume(not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,127}=[^\x00]*", value))
    assume(value not in ("local",))
    before = dump()
    add = ["service", "add", "svc", "--source", world["source"]]
    args = {"ls": ["ls", "--host", value], "containers": ["containers", "--host", value],
            "service-host": add + ["--host", value], "project": add + ["--project", value],
            "volume": add + ["--volume", value], "env": add + ["--env", value]}[command]
    assert_refused(world, args, before)


@FUZZ
@given(value=st.text(max_size=30))
def test_any_bad_phase_name_is_refused(world, value):
    assume(value.upper() not in validate.PHASES)
    before = dump()
    assert_refused(world, ["resume", world["failed"], "--from", value], before)
    with pytest.raises(InputError):
        world["engine"].resume(world["failed"], from_phase=value)
    assert dump() == before


COMMANDS = ["ls", "show", "cancel", "resume", "containers", "service", "deploy", "rollback"]
VOCABULARY = ["ls", "show", "cancel", "resume", "containers", "service", "add", "deploy", "rollback", "--json",
              "--status", "--service", "--host", "--from", "--to", "--detach", "--all", "--limit", "failed", "-1",
              "../..", "/etc/passwd", "deployer.managed=false", "x,deployer.store=1", "*", "", "0", "ABCDEF",
              "\n", "--source", "--volume", "--env", "--port", "99999"]


@FUZZ
@given(command=st.sampled_from(COMMANDS),
       rest=st.lists(st.one_of(st.sampled_from(VOCABULARY), ARG), max_size=5))
def test_arbitrary_cli_arguments_end_in_one_line_and_exit_0_or_2_without_touching_the_store(world, command, rest):
    """A command (with none, `deployer-console` opens the console) followed by anything."""
    argv = [command, *rest]
    assume(not any(a in ("web", "--help", "--version") or a in world["ids"] for a in argv))
    assume(not any(a.startswith(("--data-dir", "--db", "--docker-host")) for a in argv))
    before = dump()
    filters = []
    real_call = Gateway._call

    def spy(self, what, fn, *args, **kwargs):
        if "filters" in kwargs:
            filters.append(kwargs["filters"])
        return real_call(self, what, fn, *args, **kwargs)

    with mock.patch.object(Gateway, "_call", spy):
        code, out, err = run_main(world["base"] + argv)
    assert "Traceback" not in out + err, (argv, err)
    assert code in (0, 2), (argv, code, err)
    if code == 2:
        assert len(err.strip().splitlines()) == 1, (argv, err)
    assert dump() == before, f"{argv} changed the store"
    for flt in filters:  # every label filter we send carries our own, validated values
        for label in flt.get("label", []):
            key, _, value = label.partition("=")
            assert key in ("deployer.managed", "deployer.store", "deployer.deployment_id"), label
            if key == "deployer.deployment_id":
                assert FULL_ID.fullmatch(value), label


@FUZZ
@given(value=st.text(max_size=60))
def test_paths_never_leave_the_data_directory(tmp_path, value):
    paths = Paths(tmp_path / "data")
    for make in (paths.release, paths.service, paths.archive, paths.route, paths.current):
        try:
            path = make(value)
        except (InputError, ValueError):
            continue
        assert path.resolve().is_relative_to(paths.data) or path.parent.resolve().is_relative_to(paths.data), path


@FUZZ
@given(value=st.text(max_size=60))
def test_validators_accept_only_their_allow_list(value):
    for check, pattern in ((validate.service_name, validate.SERVICE_RE), (validate.host_name, validate.HOST_RE),
                           (validate.deployment_id, validate.DEPLOYMENT_RE)):
        if pattern.fullmatch(value):
            assert check(value) == value
            assert "/" not in value and ".." not in value and "=" not in value and "," not in value
        else:
            with pytest.raises(InputError) as e:
                check(value)
            assert "\n" not in str(e.value)


@pytest.mark.parametrize("arg", ["line\nbreak", "\u202eevil", "x" * 10000, "../../../../etc/passwd", "ü-ñ-🚀",
                                 "$(touch /tmp/pwned)", "a;b", "-", "--"])
def test_awkward_arguments_through_the_installed_binary(world, arg):
    before = dump()
    env = cli_env()
    for args in (["show", arg], ["deploy", arg], ["service", "add", arg, "--source", world["source"]]):
        result = run_cli(world["base"] + args, env, timeout=60)
        assert result.returncode == 2, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)
        assert "Traceback" not in result.stderr
        assert dump() == before
    assert not Path("/tmp/pwned").exists()
