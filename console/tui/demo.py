"""`deployer-console demo`: a demo project a new user can watch — one deployment that succeeds (and a second that
supersedes it, so there is something to roll back to), one that fails at the health check (cleanup removes it), and a
slow build (RUN sleep 60) to cancel with `c`. The deployments are queued for the engine the console hosts; this
module only writes the services' sources under the data dir and queues them. No Textual import.
"""
import logging
import textwrap
import threading
import time
import uuid

from console.engine.deployments import ACTIVE
from console.engine.errors import InputError

log = logging.getLogger(__name__)

HTTPD = """\
FROM deployer/base:busybox
COPY index.html /www/index.html
{extra}
CMD ["httpd", "-f", "-p", "8080", "-h", "{root}"]
"""
SERVICES = {
    # name: (extra Dockerfile lines, document root, health path)
    "demo-web": ("", "/www", "/"),
    "demo-broken": ("", "/nonexistent", "/healthz"),
    # the token changes every demo run, so the engine's layer cache never makes the slow build fast
    "demo-slow": ("RUN echo {token} >/dev/null && sleep 60", "/www", "/"),
}
DEMO_HEALTH_TIMEOUT = 10.0


def write_sources(engine) -> dict[str, str]:
    root = engine.settings.data_dir / "demo"
    out = {}
    for name, (extra, docroot, _) in SERVICES.items():
        src = root / name
        src.mkdir(parents=True, exist_ok=True, mode=0o700)
        extra = textwrap.dedent(extra).replace("{token}", uuid.uuid4().hex)
        (src / "Dockerfile").write_text(HTTPD.format(extra=extra, root=docroot))
        (src / "index.html").write_text(f"<h1>{name}</h1>\n")
        out[name] = str(src)
    return out


def prepare(engine) -> None:
    """Build the base image if missing and add (or update) the demo services."""
    if engine.settings.read_only:
        raise InputError("the demo deploys services; run it without --read-only")
    engine.hosts.gateway().ensure_base_image()
    # the failing deployment should fail (and be cleaned up) within the first minute
    engine.settings.pipeline.health_timeout = min(engine.settings.pipeline.health_timeout, DEMO_HEALTH_TIMEOUT)
    for name, src in write_sources(engine).items():
        engine.add_service(name, src, port=8080, health_path=SERVICES[name][2], project="demo", replace=True)


def start(engine) -> threading.Thread:
    """Queue the demo deployments from a background thread (never the UI thread), for the engine's runtime to run."""
    def director():
        try:
            first = engine.deploy("demo-web", detach=True)
            for name in ("demo-broken", "demo-slow"):
                engine.deploy(name, detach=True)
            # the second web deployment after the first ends, so it supersedes it (a rollback target)
            end = time.monotonic() + 300
            while time.monotonic() < end:
                status = engine.get(first.id).status
                if status not in ACTIVE:
                    break
                time.sleep(0.5)
            engine.deploy("demo-web", detach=True)
        except Exception:
            log.exception("demo director")
        finally:
            engine.release_connection()

    thread = threading.Thread(target=director, name="demo-director", daemon=True)
    thread.start()
    return thread
