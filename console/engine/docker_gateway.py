"""Every docker-py call lives here: label queries, build, create/start/stop/remove, logs, volume backup.

One Gateway per Docker host. Queries always use Docker's own label filters with exact `key=value` pairs; removal is
`force=True, v=True` and treats 404 (no such container) and 409 (removal already in progress) as done. Lists use the
low-level API, which returns the engine's summaries without an inspect per container.
"""
import gzip
import io
import json
import logging
import os
import re
import socket
import tarfile
import threading
import time
from dataclasses import dataclass, field

import docker
import docker.errors
import requests.exceptions
import urllib3.exceptions
from docker.utils import tar as make_build_context

from console.engine import docker_compat
from console.engine import labels as L
from console.engine.breaker import Breaker
from console.engine.errors import Cancelled, EngineUnavailable, ForeignContainer

# gzip's level for log archives and volume backups: 6 (the gzip tool's default) compresses 45 MB of Python sources
# in 1.2 s against 5.2 s at Python's default 9, for 1 % more bytes; a large volume's backup must finish in its deadline
GZIP_LEVEL = 6
log = logging.getLogger(__name__)
BASE_IMAGE = "deployer/base:busybox"
UNREACHABLE = (requests.exceptions.ConnectionError, requests.exceptions.Timeout, ConnectionError, socket.timeout,
               OSError)
# a streamed answer whose connection breaks half-way: docker-py reads some (a build's) from urllib3 itself, whose
# ProtocolError is none of requests' exceptions, and others (an archive) through requests
STREAM_BROKE = (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError)


def _stream_or_unavailable(stream, host: str, what: str):
    """The chunks of a streamed answer; a connection that breaks half-way is EngineUnavailable (one line)."""
    try:
        yield from stream
    except STREAM_BROKE as e:
        raise EngineUnavailable(f"Docker host {host}: {what} stream broke: {type(e).__name__}") from e


class FollowedLogs:
    """docker-py's followed log stream, whose close() also works over ssh:// (docker-py cannot cancel a stream on
    its ssh transport; there the ssh process under it is ended, which ends the stream as closing a socket does)."""

    def __init__(self, stream):
        self._stream = stream

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._stream)

    def close(self) -> None:
        try:
            self._stream.close()
            return
        except Exception:  # noqa: BLE001 - the ssh transport: end its process below
            pass
        response = docker_compat.stream_response(self._stream)
        channel = docker_compat.ssh_channel(response)
        try:
            if channel is not None:
                channel.shutdown()
        finally:
            if response is not None:
                response.close()


class StatsStream:
    """Decoded JSON lines of a stream (a container's stats, the events); close() ends the HTTP response under it."""

    def __init__(self, response):
        self._response = response
        self._lines = response.iter_lines(chunk_size=None)

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        while True:
            line = next(self._lines)
            if line.strip():
                return json.loads(line)

    def close(self) -> None:
        self._response.close()

    def shutdown(self) -> None:
        """End the stream from another thread than the one reading it: its socket is shut down (urllib3's
        HTTPResponse.shutdown), which wakes a read blocked on it; the reading thread then closes it. (Closing it from
        here would wait for that read, which an idle event stream may never finish.)"""
        try:
            self._response.raw.shutdown()
        except Exception:  # noqa: BLE001 - already released or closed: nothing is blocked on it
            pass


@dataclass
class ContainerInfo:
    id: str
    name: str
    state: str
    status: str
    image: str
    created: float
    labels: dict = field(default_factory=dict)
    ports: list = field(default_factory=list)
    host: str = ""
    # (store id, deployment id) once `labels.is_ours` said so: only such a handle can be started, stopped or exec'd
    owned_by: tuple[str, str] | None = None

    @property
    def deployment_id(self) -> str | None:
        return self.labels.get(L.DEPLOYMENT)

    @property
    def service(self) -> str | None:
        return self.labels.get(L.SERVICE)

    @property
    def health(self) -> str:
        for word in ("healthy", "unhealthy", "starting"):
            if f"({word})" in self.status or f"(health: {word})" in self.status:
                return word
        return "-"

    @property
    def running(self) -> bool:
        return self.state == "running"

    def as_dict(self) -> dict:
        return {"id": self.id[:12], "name": self.name, "deployment_id": self.deployment_id, "service": self.service,
                "state": self.state, "status": self.status, "health": self.health, "image": self.image,
                "created": self.created, "ports": self.ports, "host": self.host}


def _summary(raw: dict, host: str) -> ContainerInfo:
    ports = [f"{p.get('IP', '')}:{p['PublicPort']}->{p['PrivatePort']}/{p['Type']}"
             for p in raw.get("Ports") or [] if p.get("PublicPort")]
    return ContainerInfo(id=raw["Id"], name=(raw.get("Names") or ["/?"])[0].lstrip("/"), state=raw.get("State", ""),
                         status=raw.get("Status", ""), image=raw.get("Image", ""), created=float(raw.get("Created", 0)),
                         labels=raw.get("Labels") or {}, ports=sorted(set(ports)), host=host)


class BackupTooLarge(RuntimeError):
    """A volume backup grew past the bytes it was allowed: abandoned, its part file removed."""


_RUNNING_IN = re.compile(r"---> Running in ([0-9a-f]{12,64})")
_REMOVING = re.compile(r"Removing intermediate container ([0-9a-f]{12,64})")
_STEP_IMAGE = re.compile(r"---> ([0-9a-f]{12,64})")


def _ancestors(image_id: str, images: dict) -> set[str]:
    found, parent = set(), (images.get(image_id) or {}).get("ParentId")
    while parent in images and parent not in found:
        found.add(parent)
        parent = images[parent].get("ParentId")
    return found


def _private_file(path):
    """A new file opened for binary writing, mode 0600 (archives hold logs and volume data)."""
    return os.fdopen(os.open(path, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600), "wb")


def _demux(body: bytes) -> bytes:
    """The payload of a multiplexed log stream (8-byte headers: stream 0/1/2, three zero bytes, big-endian size),
    or `body` itself when it is not one (a container with a tty sends its output raw)."""
    out, i, n = [], 0, len(body)
    while i < n:
        if i + 8 > n or body[i] not in (0, 1, 2) or body[i + 1:i + 4] != b"\0\0\0":
            return body
        size = int.from_bytes(body[i + 4:i + 8], "big")
        if i + 8 + size > n:
            return body
        out.append(body[i + 8:i + 8 + size])
        i += 8 + size
    return b"".join(out)


def _is_gone(e: docker.errors.APIError) -> bool:
    code = getattr(e, "status_code", None)
    text = str(e).lower()
    return code == 404 or (code == 409 and "already in progress" in text) or "no such container" in text


class Gateway:
    """Every Docker call of one host. `breaker` (optional) fails calls fast after a failure; `on_call(host, what)`
    (optional, the one public hook) is called before each Docker API call: the reconcile pass and the benches count
    calls with it. `publish_address`: the address of that machine its containers publish their port on, the one a
    proxy reaches them at (127.0.0.1 when the proxy runs beside the engine; `[hosts.NAME] address`); `local_loopback`:
    whether that machine's loopback is this one's (false for a host over the network: a route to its loopback would
    lead to this machine's)."""

    def __init__(self, host: str, client: docker.DockerClient, breaker: Breaker | None = None, on_call=None,
                 publish_address: str = "127.0.0.1", local_loopback: bool = True):
        self.host = host
        self.client = client
        self.api = client.api
        self.breaker = breaker
        self.on_call = on_call
        self.publish_address = publish_address
        self.local_loopback = local_loopback

    def _call(self, what: str, fn, *args, **kwargs):
        if self.breaker is not None:
            self.breaker.check(self.host)
        try:
            result = self._attempt(what, fn, *args, **kwargs)
        except EngineUnavailable as e:
            if self.breaker is not None:
                self.breaker.trip(self.host, str(e))
            raise
        if self.breaker is not None:
            self.breaker.clear(self.host)
        return result

    def _attempt(self, what: str, fn, *args, **kwargs):
        """One Docker call, the breaker left out of it: an unreachable engine is EngineUnavailable."""
        if self.on_call is not None:
            self.on_call(self.host, what)
        try:
            return fn(*args, **kwargs)
        except docker.errors.APIError:  # an answer from the engine (404, 409...), not an unreachable engine
            raise
        except UNREACHABLE as e:
            text = " ".join(str(e).split())
            # over ssh:// the reason is what ssh said (console/engine/ssh.py): worth the line
            why = f"{type(e).__name__}: {text[text.index('ssh to'):][:200]}" if "ssh to" in text else type(e).__name__
            raise EngineUnavailable(f"Docker host {self.host} unreachable while {what}: {why}") from e

    # ---- engine
    def ping(self, timeout: float | None = None, probe: bool = False) -> bool:
        """Ask the engine; with `timeout` the ping is bounded by it (a host that accepts and never answers). A
        probe asks the engine itself, whatever the breaker says."""
        if timeout is None:
            return bool(self._call("pinging", self.api.ping))
        if probe:
            if self.breaker is not None:
                self.breaker.clear(self.host)
            self._attempt("pinging", docker_compat.ping_within, self.api, timeout)
            if self.breaker is not None:
                self.breaker.clear(self.host)
            return True
        self._call("pinging", docker_compat.ping_within, self.api, timeout)
        return True

    def version(self) -> dict:
        """The engine's `docker version` answer (Version, ApiVersion, Os, Arch...)."""
        return self._call("asking the version", self.api.version)

    # ---- images
    def image_exists(self, ref: str) -> bool:
        try:
            self._call("inspecting an image", self.api.inspect_image, ref)
            return True
        except docker.errors.ImageNotFound:
            return False

    def ensure_base_image(self, busybox_path: str = "/bin/busybox", tag: str = BASE_IMAGE) -> bool:
        """Build deployer/base:busybox (FROM scratch + static busybox) when missing. True if it was built."""
        if self.image_exists(tag):
            return False
        dockerfile = b'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo("Dockerfile")
            info.size = len(dockerfile)
            tar.addfile(info, io.BytesIO(dockerfile))
            tar.add(busybox_path, arcname="busybox")
        buf.seek(0)
        for chunk in self._call("building the base image", self.api.build, fileobj=buf, custom_context=True,
                                tag=tag, rm=True, forcerm=True, decode=True,
                                labels=L.BASE_IMAGE_LABELS):
            if "error" in chunk:
                raise RuntimeError(f"base image build failed: {chunk['error'].strip()}")
        return True

    def build(self, context_dir: str, tag: str, labels: dict, on_line, should_stop) -> str:
        """Build an image, streaming each output line to `on_line`. `should_stop()` is polled by a watcher; when it
        turns true the HTTP connection is shut down, which makes the engine abort the build and remove its
        intermediate containers, and Cancelled is raised."""
        context = make_build_context(context_dir, gzip=False)
        stream = self._call("starting a build", self.api.build, fileobj=context, custom_context=True, tag=tag,
                            labels=labels, rm=True, forcerm=True, quiet=False, decode=True, timeout=None)
        response = docker_compat.build_response(stream)
        stopped = threading.Event()
        done = threading.Event()
        sock = docker_compat.response_socket(self.api, response) if response is not None else None

        def watch():
            while not done.wait(0.2):
                if should_stop():
                    stopped.set()
                    try:
                        if sock is not None:
                            sock.shutdown(socket.SHUT_RDWR)
                    except Exception:  # already closed, or a transport without a socket
                        pass
                    try:
                        if response is not None:
                            response.close()
                    except Exception:
                        pass
                    return

        watcher = threading.Thread(target=watch, name=f"build-watch-{tag}", daemon=True)
        watcher.start()
        image_id = None
        try:
            for chunk in stream:
                if "stream" in chunk:
                    for line in chunk["stream"].splitlines():
                        if line.strip():
                            on_line(line.rstrip())
                if "error" in chunk:
                    raise RuntimeError(f"build failed: {chunk['error'].strip()}")
                if "aux" in chunk and "ID" in chunk["aux"]:
                    image_id = chunk["aux"]["ID"]
        except (*STREAM_BROKE, ValueError, AttributeError) as e:  # cut by the watcher, or by a dying engine
            if stopped.is_set():
                raise Cancelled() from e
            raise EngineUnavailable(f"Docker host {self.host}: build stream broke: {type(e).__name__}") from e
        finally:
            done.set()
            stream.close()
            if response is not None:
                response.close()
        if stopped.is_set():
            raise Cancelled()
        if image_id is None and not self.image_exists(tag):
            raise RuntimeError("build finished without an image")
        return image_id or self.api.inspect_image(tag)["Id"]

    def image_labels(self, ref: str) -> dict:
        return (self._call("inspecting an image", self.api.inspect_image, ref).get("Config") or {}).get("Labels") \
            or {}

    def remove_build_leftovers(self, build_lines: list[str], since: float) -> list[str]:
        """Remove the untagged images a cancelled or failed build left behind (the classic builder keeps every step
        it committed). They carry no build labels -- the builder adds those as its last steps -- so they are known
        by provenance, from the build's own output: the step images it says it committed, images committed from
        its own intermediate containers, and untagged images created since `since` on top of those. Removed leaves
        first, without force and without pruning: an image in use or with other children stays. Returns the ids."""
        committed, containers, previous = set(), set(), ""
        for line in build_lines:
            text = line.strip()
            if m := _RUNNING_IN.fullmatch(text) or _REMOVING.fullmatch(text):
                containers.add(m[1][:12])
            elif (m := _STEP_IMAGE.fullmatch(text)) and _REMOVING.fullmatch(previous):
                committed.add(m[1][:12])
            previous = text
        if not committed and not containers:
            return []
        untagged = {i["Id"]: i for i in self._call("listing images", self.api.images, all=True)
                    if not [t for t in i.get("RepoTags") or [] if t != "<none>:<none>"]
                    and float(i.get("Created") or 0) >= since - 60}
        ours = set()
        for image_id in untagged:
            if image_id.split(":")[-1][:12] in committed:
                ours.add(image_id)
            elif containers:
                try:
                    made_by = self._call("inspecting an image", self.api.inspect_image, image_id).get("Container")
                except docker.errors.NotFound:
                    continue
                if (made_by or "")[:12] in containers:
                    ours.add(image_id)
        grew = True
        while grew:  # the steps committed on top of ours after the output stopped reaching us
            grew = False
            for image_id, info in untagged.items():
                if image_id not in ours and info.get("ParentId") in ours:
                    ours.add(image_id)
                    grew = True
        removed = []
        while ours:
            leaves = [i for i in ours if not any(untagged[o].get("ParentId") == i for o in ours)] or list(ours)
            for image_id in leaves:
                ours.discard(image_id)
                try:
                    self._call("removing an image", self.api.remove_image, image_id, force=False, noprune=True)
                    removed.append(image_id)
                except docker.errors.APIError as e:  # in use, or another build's image now sits on it: leave it
                    log.info("build leftover %s kept: %s", image_id[:19], e)
                    ours -= _ancestors(image_id, untagged)
        return removed

    def store_image_tags(self, store_id: str) -> dict[str, int]:
        """{tag: how many tags its image has} of every image labelled with this store: one call that answers
        `remove_image`'s "does it exist" for a whole cleanup run."""
        tags: dict[str, int] = {}
        for image in self._call("listing images", self.api.images, filters={"label": [f"{L.STORE}={store_id}"]}):
            names = [t for t in image.get("RepoTags") or [] if t != "<none>:<none>"]
            for t in names:
                tags[t] = len(names)
        return tags

    def remove_image(self, ref: str, tags: int | None = None) -> str:
        """Remove an image unless a container still uses it. Returns removed | gone | in-use.

        An image that does not exist (most failed or cancelled deployments never built one) costs one inspect, not
        a container scan by ancestor plus a removal attempt. `tags` is the caller's own knowledge from
        `store_image_tags` (0: no such image of ours, n: it exists with n tags): no inspect then, and with a single
        tag no container scan either, since the engine itself refuses (409) to remove the last reference of an
        image a container uses."""
        if tags == 0 or (tags is None and not self.image_exists(ref)):
            return "gone"
        if tags == 1:
            return self._remove_image_ref(ref)
        try:
            users = self._call("listing containers", self.api.containers, all=True, filters={"ancestor": ref})
        except docker.errors.NotFound:
            return "gone"
        except docker.errors.APIError as e:
            if "no such image" in str(e).lower():
                return "gone"
            raise
        if users:
            return "in-use"
        return self._remove_image_ref(ref)

    def _remove_image_ref(self, ref: str) -> str:
        try:
            self._call("removing an image", self.api.remove_image, ref, force=False, noprune=False)
            return "removed"
        except docker.errors.ImageNotFound:
            return "gone"
        except docker.errors.APIError as e:
            if e.status_code == 409:
                return "in-use"
            raise

    # ---- containers
    def list_managed(self, store_id: str, deployment_id: str | None = None, all: bool = True) -> list[ContainerInfo]:
        raw = self._call("listing containers", self.api.containers, all=all,
                         filters=L.managed_filter(store_id, deployment_id))
        found = [_summary(r, self.host) for r in raw]
        for info in found:
            if L.is_ours(info.labels, store_id, deployment_id):
                info.owned_by = (store_id, info.deployment_id)
        return found

    def _find_by_name(self, name: str) -> ContainerInfo | None:
        raw = self._call("listing containers", self.api.containers, all=True, filters={"name": f"^/{name}$"})
        return _summary(raw[0], self.host) if raw else None

    def find_ours(self, name: str, store_id: str, deployment_id: str) -> ContainerInfo | None:
        """The container called `name`, verified to be deployment `deployment_id`'s of this store. None when no
        container has that name; ForeignContainer when one has it and is not ours (a look-alike someone created by
        hand, another store's): the only way to look a container up by name, so a name never leads to a stranger."""
        info = self._find_by_name(name)
        return None if info is None else self._vouch(info, store_id, deployment_id)

    def _vouch(self, info: ContainerInfo, store_id: str, deployment_id: str) -> ContainerInfo:
        if not L.is_ours(info.labels, store_id, deployment_id):
            ours = ", ".join(f"{k}={v}" for k, v in sorted(info.labels.items()) if k.startswith("deployer.")) or \
                "no deployer labels"
            raise ForeignContainer(f"container {info.name} on host {self.host} is not deployment {deployment_id}'s "
                                   f"({ours}); nothing was done to it")
        info.owned_by = (store_id, deployment_id)
        return info

    def _acting_on(self, info: ContainerInfo, what: str) -> str:
        """Start, stop and exec take only a handle whose labels were checked (`find_ours`, `list_managed`): labels
        never change after creation and the id never names another container, so the check holds for the call."""
        if not isinstance(info, ContainerInfo) or info.owned_by is None:
            name = getattr(info, "name", info)
            raise ForeignContainer(f"refusing to {what} container {name} on host {self.host}: its ownership was "
                                   f"not checked; nothing was done to it")
        return info.id

    def create_container(self, name: str, image: str, labels: dict, env: dict, port: int,
                         mounts: list[tuple[str, str]], healthcheck: dict | None = None) -> str:
        """Create (not start) a container. If one of this name already exists with the same deployment label, it is
        reused: the phase is idempotent."""
        existing = self.find_ours(name, labels[L.STORE], labels[L.DEPLOYMENT])
        if existing is not None:
            return existing.id
        host_config = self.api.create_host_config(
            port_bindings={f"{port}/tcp": (self.publish_address, None)},
            binds={vol: {"bind": path, "mode": "rw"} for vol, path in mounts},
            init=True, restart_policy={"Name": "no"})
        try:
            created = self._call("creating a container", self.api.create_container, image=image, name=name,
                                 labels=labels, environment=env, ports=[port], host_config=host_config,
                                 healthcheck=healthcheck)
        except docker.errors.APIError as e:
            if e.status_code == 409:  # a concurrent create of the same name: take it if it is ours
                existing = self.find_ours(name, labels[L.STORE], labels[L.DEPLOYMENT])
                if existing is not None:
                    return existing.id
            raise
        return created["Id"]

    def start(self, info: ContainerInfo) -> None:
        self._call("starting a container", self.api.start, self._acting_on(info, "start"))

    def stop(self, info: ContainerInfo, timeout: int = 5) -> str:
        container_id = self._acting_on(info, "stop")
        try:
            self._call("stopping a container", self.api.stop, container_id, timeout=timeout)
            return "stopped"
        except docker.errors.NotFound:
            return "gone"

    def inspect(self, container_id: str) -> dict | None:
        try:
            return self._call("inspecting a container", self.api.inspect_container, container_id)
        except docker.errors.NotFound:
            return None

    def remove_container(self, container_id: str) -> str:
        """force + v; returns 'removed', or 'gone' when the engine says 404 / removal already in progress."""
        try:
            self._call("removing a container", self.api.remove_container, container_id, force=True, v=True)
            return "removed"
        except docker.errors.APIError as e:
            if _is_gone(e):
                return "gone"
            raise

    def http_check(self, info: ContainerInfo, port: int, path: str) -> tuple[bool, str]:
        """Ask the container itself for http://127.0.0.1:PORT/PATH (busybox wget: exit 0 on 2xx/3xx). Going through
        the engine's exec API works the same for local and remote hosts."""
        container_id = self._acting_on(info, "exec in")
        try:
            result = self._call("health-checking", self.client.containers.get(container_id).exec_run,
                                ["timeout", "3", "wget", "-q", "-O", "/dev/null", f"http://127.0.0.1:{port}{path}"],
                                demux=False)
        except docker.errors.NotFound:
            return False, "container is gone"
        except docker.errors.APIError as e:
            return False, str(e.explanation or e)[:200]
        output = (result.output or b"").decode(errors="replace").strip().splitlines()
        return result.exit_code == 0, (output[-1] if output else f"wget exit {result.exit_code}")

    def logs(self, container_id: str, tail: int | str = "all") -> bytes:
        return self._call("reading logs", self.api.logs, container_id, stdout=True, stderr=True, timestamps=True,
                          tail=tail)

    def follow_logs(self, container_id: str, tail: int = 200):
        """A generator of log lines (bytes) that follows the container; close it to stop."""
        return FollowedLogs(self._call("following logs", self.api.logs, container_id, stdout=True, stderr=True,
                                       stream=True, follow=True, tail=tail, timestamps=False))

    def stats_stream(self, info: ContainerInfo, read_timeout: float = 30.0) -> "StatsStream":
        """The engine's stats stream of one of our containers (a decoded sample a second, like `docker stats`); close
        it to end the stream. Only a handle whose labels were checked (`list_managed`, `find_ours`) is accepted.

        docker-py's `stats(stream=True)` gives a generator that cannot close its HTTP response; the same endpoint is
        read here through the client's own session (docker-py's APIClient is a requests.Session), so close() ends
        the connection and the engine stops the stream."""
        cid = self._acting_on(info, "stream stats of")
        return self._json_stream("streaming stats", f"containers/{cid}/stats", {"stream": "1"}, read_timeout)

    def container_events(self, store_id: str, read_timeout: float = 5.0) -> "StatsStream":
        """The engine's event stream (`docker events`) of this store's containers only (its label, type container),
        decoded; close it to end the stream. Nothing is sent while nothing happens: a read waits at most
        read_timeout (a requests ReadTimeout), so the reader can look up and open it again."""
        filters = json.dumps({"type": ["container"], "label": [f"{L.STORE}={store_id}"]})
        return self._json_stream("streaming events", "events", {"filters": filters}, read_timeout)

    def _json_stream(self, what: str, path: str, params: dict, read_timeout: float) -> "StatsStream":
        """A streamed endpoint read through the client's own session (docker-py's APIClient is a requests.Session),
        so that the stream can be closed or shut down; an error answer is docker-py's APIError, as its calls raise."""
        url = f"{self.api.base_url}/v{self.api.api_version}/{path}"
        response = self._call(what, self.api.get, url, params=params, stream=True,
                              timeout=(min(10.0, read_timeout), read_timeout))
        try:
            response.raise_for_status()
        except requests.exceptions.HTTPError as e:
            response.close()
            raise docker.errors.create_api_error_from_http_exception(e) from e
        return StatsStream(response)

    def whole_log(self, container_id: str) -> bytes:
        """The container's whole log (stdout and stderr, timestamps), as `logs()` returns it, in one request:
        docker-py's `logs()` first inspects the container to learn whether it has a tty; the answer itself says so
        (a log without a tty is a multiplexed stream of framed chunks, see `_demux`)."""
        params = {"stdout": 1, "stderr": 1, "timestamps": 1, "follow": 0, "tail": "all"}
        url = f"{self.api.base_url}/v{self.api.api_version}/containers/{container_id}/logs"
        response = self._call("reading logs", self.api.get, url, params=params, stream=False)
        try:
            response.raise_for_status()
        except requests.exceptions.HTTPError as e:
            raise docker.errors.create_api_error_from_http_exception(e) from e
        return _demux(response.content)

    def archive_logs(self, container_id: str, dest) -> int:
        """Write the container's whole log, gzipped, to `dest` (a Path). Returns the bytes written."""
        data = self.whole_log(container_id)
        tmp = dest.with_name(dest.name + ".part")
        try:
            with _private_file(tmp) as raw:
                with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=GZIP_LEVEL) as gz:
                    gz.write(data)
                raw.flush()
                os.fsync(raw.fileno())
            tmp.replace(dest)
        finally:  # a full disk leaves no half-written part behind (the removal waits and is retried)
            tmp.unlink(missing_ok=True)
        return dest.stat().st_size

    # ---- volumes
    def create_volume(self, name: str, labels: dict) -> None:
        try:
            vol = self._call("inspecting a volume", self.api.inspect_volume, name)
            if (vol.get("Labels") or {}).get(L.STORE) != labels.get(L.STORE):
                raise RuntimeError(f"a volume named {name} exists and is not ours")
            return
        except docker.errors.NotFound:
            pass
        self._call("creating a volume", self.api.create_volume, name=name, labels=labels)

    def list_volumes(self, store_id: str, deployment_id: str | None = None) -> list[dict]:
        result = self._call("listing volumes", self.api.volumes, filters=L.managed_filter(store_id, deployment_id))
        return (result or {}).get("Volumes") or []

    def remove_volume(self, name: str) -> str:
        try:
            self._call("removing a volume", self.api.remove_volume, name, force=False)
            return "removed"
        except docker.errors.NotFound:
            return "gone"

    def backup_volume(self, name: str, dest, labels: dict, should_stop=None, max_bytes: int | None = None,
                      deadline_s: float = 300) -> int:
        """tar.gz of a volume's contents into `dest`, read by a helper container of the base image that is created
        (never started) with the volume mounted read-only; its /data is streamed with the archive API. The helper
        carries `labels` (the deployment's, with role=backup-helper) so one left by a process that died here is
        found and removed. The stream is written to `<dest>.part`, renamed only once complete; `should_stop()` is
        checked at every chunk (Cancelled), and past `max_bytes` written the backup is abandoned (BackupTooLarge):
        either way the part is removed and nothing is left at `dest`."""
        helper = self._call("creating a backup helper", self.api.create_container, image=BASE_IMAGE,
                            command=["true"], labels=labels,
                            host_config=self.api.create_host_config(binds={name: {"bind": "/data", "mode": "ro"}}))
        tmp = dest.with_name(dest.name + ".part")
        stream = None
        try:
            stream, _ = self._call("reading a volume", self.api.get_archive, helper["Id"], "/data/.")
            started = time.monotonic()
            with _private_file(tmp) as raw:
                with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=GZIP_LEVEL) as gz:
                    for chunk in _stream_or_unavailable(stream, self.host, "volume"):
                        if should_stop is not None and should_stop():
                            raise Cancelled(f"backup of volume {name} abandoned")
                        gz.write(chunk)
                        if max_bytes is not None and raw.tell() > max_bytes:
                            raise BackupTooLarge(f"backup of volume {name} is over {max_bytes} bytes")
                        if time.monotonic() - started > deadline_s:
                            raise RuntimeError(f"volume backup of {name} took over {deadline_s:.0f} s")
                raw.flush()
                os.fsync(raw.fileno())
            tmp.replace(dest)
        finally:
            if stream is not None:
                stream.close()  # drops the HTTP response: the engine stops reading the volume
            tmp.unlink(missing_ok=True)
            try:
                self.api.remove_container(helper["Id"], force=True, v=False)
            except Exception:  # noqa: BLE001 - a helper left here is labelled: the next cleanup or reconcile removes it
                log.warning("backup helper %s of volume %s not removed", helper["Id"][:12], name)
        return dest.stat().st_size
