"""One active runner per store: a lease row, Kubernetes leader-election style.

Every process that hosts a runtime tries, every `lease_retry` seconds, to acquire or renew the row `Lease("engine")`
in one write transaction (BEGIN IMMEDIATE on SQLite, the advisory lock on PostgreSQL), so the read and the write are
a compare-and-set: exactly one process holds the lease at a time.

- The holder renews every `lease_retry` (2 s); a renew pushes `expires_at` to now + `lease_duration` (15 s).
- A holder counts itself the leader only until `renew_deadline` (10 s) after the start of its last successful renew,
  measured on its own monotonic clock. A holder whose renews fail or hang (store locked, disk stalled) therefore stops
  acting at least `lease_duration - renew_deadline` (5 s) before anyone else may take the lease.
- A follower takes the lease once `expires_at` has passed, or at once when the recorded holder ran on this machine and
  its pid is provably gone (`os.kill(pid, 0)` raises ProcessLookupError), the same proof `liveness.is_stuck` uses.
- A clean stop releases the lease (expires_at = now) so a follower takes over at its next attempt.

Followers write nothing; an acquire or a takeover is recorded as an event of kind `reconcile`.
"""
import logging
import os
import secrets
import threading
import time

from console.engine import deployments as D
from console.engine.errors import one_line
from console.engine.liveness import pid_gone
from console.engine.status import LEASE_NAME, lease_dict
from storage.clock import now
from storage.models import Lease

log = logging.getLogger(__name__)


def new_holder_id() -> str:
    return f"{D.MACHINE}:{os.getpid()}:{secrets.token_hex(3)}"


class LeaseKeeper:
    """Acquires and renews the lease for this process. `step()` is one attempt; `is_leader` is the answer to "may I
    act now?" and turns false by itself at the renew deadline, even while a renew is stuck inside the store."""

    def __init__(self, store, settings, holder: str | None = None, name: str = LEASE_NAME):
        self.store = store
        self.settings = settings
        self.name = name
        self.holder = holder or new_holder_id()
        self._valid_until = 0.0          # monotonic: act only before this
        self._stamp = 0.0                # monotonic time of the last write's `now()`
        self._lock = threading.Lock()
        self.last_error: str | None = None

    @property
    def is_leader(self) -> bool:
        return time.monotonic() < self._valid_until

    def step(self) -> bool:
        """One acquire-or-renew attempt. Returns whether this process is the leader afterwards."""
        with self._lock:
            try:
                got, takeover = self._try()
            except Exception as e:  # noqa: BLE001 - a store error is a failed renew: the deadline decides, not the exception
                self.last_error = one_line(e)
                log.warning("lease %s: renew attempt failed: %s", self.holder, self.last_error)
                return self.is_leader
            self.last_error = None
            if got:
                # counted from the moment the write lock was held and `expires_at` computed, so the local deadline
                # always falls (lease_duration - renew_deadline) before the expiry everybody else sees
                self._valid_until = self._stamp + float(self.settings.scheduler.lease_renew_deadline)
            else:
                self._valid_until = 0.0
            if takeover:
                log.info("lease %s: %s", self.holder, takeover)
            return self.is_leader

    def _try(self) -> tuple[bool, str | None]:
        duration = float(self.settings.scheduler.lease_duration)
        with self.store.write():
            t, self._stamp = now(), time.monotonic()
            row = Lease.get_or_none(Lease.name == self.name)
            mine = {"holder": self.holder, "holder_machine": D.MACHINE, "holder_pid": os.getpid(), "renewed_at": t,
                    "expires_at": t + duration}
            if row is None:
                Lease.insert(name=self.name, acquired_at=t, **mine).on_conflict_ignore().execute()
                row = Lease.get_by_id(self.name)
                if row.holder == self.holder:
                    D.event(None, f"Engine {self.holder} acquired the lease", kind="reconcile")
                    return True, "acquired (new lease)"
                return False, None
            if row.holder == self.holder:
                # compare-and-set on the holder: renew only what is still ours
                n = Lease.update(**mine).where((Lease.name == self.name) & (Lease.holder == self.holder)).execute()
                return n == 1, None
            why = None
            if not row.holder or (row.expires_at or 0) <= t:
                why = f"lease of {row.holder or 'nobody'} expired" if row.holder else "lease was free"
            elif pid_gone(row.holder_machine, row.holder_pid):
                why = f"holder {row.holder} is gone (pid {row.holder_pid} no longer exists on {D.MACHINE})"
            if why is None:
                return False, None
            n = Lease.update(acquired_at=t, **mine).where(
                (Lease.name == self.name) & (Lease.holder == row.holder) & (Lease.expires_at == row.expires_at)
            ).execute()
            if n == 1:
                D.event(None, f"Engine {self.holder} took over the lease: {why}", kind="reconcile")
                return True, f"took over: {why}"
            return False, None

    def release(self) -> bool:
        """Give the lease up (a clean stop): a follower takes it at its next attempt."""
        self._valid_until = 0.0
        if not self._lock.acquire(timeout=1.0):  # a renew stuck in the store: the lease then simply expires
            return False
        try:
            try:
                with self.store.write():
                    t = now()
                    n = Lease.update(expires_at=t, renewed_at=t).where(
                        (Lease.name == self.name) & (Lease.holder == self.holder)).execute()
                    if n:
                        D.event(None, f"Engine {self.holder} released the lease", kind="reconcile")
                return bool(n)
            except Exception as e:  # noqa: BLE001 - the lease then simply expires
                log.warning("lease %s: release failed: %s", self.holder, e)
                return False
        finally:
            self._lock.release()


def current() -> dict | None:
    return lease_dict(Lease.select().where(Lease.name == LEASE_NAME).dicts().first())
