"""A shell (or one command) in a deployment's running container, through the docker CLI's `docker exec`.

Why the docker CLI and not docker-py's exec API: an interactive shell needs the operator's terminal wired to a pty in
the container (raw mode, window size, signals, escape keys), which `docker exec -it` does right on every platform;
docker-py only hands back a socket. The CLI is pointed at the deployment's host the way the engine reaches it: the
host's URL (`-H`, unix://, tcp:// or ssh://: the CLI's ssh transport uses the system ssh client and
`~/.ssh/config`, as ssh.py does) and its TLS files (`--tlsverify --tlscacert/--tlscert/--tlskey`); the default host
keeps the environment's DOCKER_HOST / DOCKER_TLS_VERIFY / DOCKER_CERT_PATH, as docker-py's `from_env` reads them.

The engine decides (ownership, read-only, audit: `Engine.exec_session`); a face only runs the session it gets back,
in the foreground (the console suspended while it runs).
"""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field

from console.engine.errors import DeployerError, ForeignContainer, InputError
from console.engine.releases import container_name

DEFAULT_SHELL = "sh"
DEFAULT_SOCKET = "unix:///var/run/docker.sock"   # docker-py's default when DOCKER_HOST is not set
# what would point the CLI somewhere else than the host we name with -H
_HOST_ENV = ("DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_TLS")


@dataclass(frozen=True)
class ExecSession:
    """One `docker exec` ready to run: which deployment, container and host, and the exact argv and environment."""
    deployment_id: str
    container: str
    host: str
    command: tuple[str, ...]
    argv: tuple[str, ...]
    env: dict = field(repr=False, default_factory=dict)

    def run(self) -> int:
        """Run it with this process's stdin/stdout/stderr (the operator's terminal); the command's exit code."""
        try:
            return subprocess.call(list(self.argv), env=self.env)
        except FileNotFoundError:
            raise DeployerError("no `docker` CLI on this machine: install the docker client (docker-ce-cli) to open "
                                "a shell in a container") from None


def cli_target(spec) -> tuple[list[str], dict]:
    """The docker CLI's global options and environment that reach host `spec` (a hosts.HostSpec)."""
    env = dict(os.environ)
    if not spec.url:                      # the default host: what docker-py's from_env reads
        return ([] if env.get("DOCKER_HOST") else ["-H", DEFAULT_SOCKET]), env
    for name in _HOST_ENV:
        env.pop(name, None)
    args = ["-H", spec.url]
    if spec.tls_ca or spec.tls_cert:
        args.append("--tlsverify")        # the server is always verified, as make_client does
        if spec.tls_ca:
            args += ["--tlscacert", spec.tls_ca]
        if spec.tls_cert:
            args += ["--tlscert", spec.tls_cert, "--tlskey", spec.tls_key]
    if spec.url.startswith("ssh://"):
        env.pop("LD_LIBRARY_PATH", None)  # the system ssh, not one linked against a venv's libraries
    return args, env


def prepare(ctx, dep, command: list[str], tty: bool) -> ExecSession:
    """The session for `command` (empty: the service's shell) in deployment `dep`'s running container. Refused
    unless the container carries this store's id and this deployment's id (Gateway.find_ours) and runs."""
    svc = dep.service
    name = container_name(svc.name, dep.id)
    gw = ctx.hosts.gateway(dep.host)
    try:
        info = gw.find_ours(name, ctx.store_id, dep.id)
    except ForeignContainer as e:       # a stranger with our name: refused, never exec'd into
        raise InputError(str(e)) from None
    if info is None:
        raise InputError(f"deployment {dep.id} has no container on host {dep.host} (it is {dep.status})")
    if not info.running:
        raise InputError(f"container {info.name} of deployment {dep.id} is {info.state}; only a running container "
                         f"can run a shell")
    command = list(command) or [svc.shell or DEFAULT_SHELL]
    args, env = cli_target(ctx.hosts.spec(dep.host))
    docker = shutil.which("docker", path=env.get("PATH")) or "docker"
    # plain mode forwards stdin too (`echo hi | deployer-console exec ID -- cat`), as `docker exec -i` does; the
    # command gets end of input when ours ends, and one that does not read it never waits for it
    flags = ["-it"] if tty else ["-i"]
    argv = [docker, *args, "exec", *flags, info.id, *command]
    return ExecSession(dep.id, info.name, dep.host, tuple(command), tuple(argv), env)
