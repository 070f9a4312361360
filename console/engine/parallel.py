"""Each of a few slow calls at once (a host probe, a doctor check, a listing per host), bounded by one timeout as a
whole. Standard library only: the CLI's quick `status` pings its hosts with it too."""
import threading
import time


def at_once(fn, items, timeout: float, default=None, name: str = "at-once") -> list:
    """`fn(item)` for every item, each in a daemon thread of its own, bounded by `timeout` as a whole: the results in
    the items' order, `default` for one that raised or did not end in time. A call that hangs (a blackholed host)
    is abandoned, never waited for, and what it returns later is dropped."""
    items = list(items)
    results = [default] * len(items)
    lock = threading.Lock()
    closed = False

    def work(i, item):
        try:
            value = fn(item)
        except Exception:  # noqa: BLE001 - the caller's fn says why itself; here it is only "no result"
            return
        with lock:
            if not closed:
                results[i] = value

    threads = [threading.Thread(target=work, args=(i, item), name=f"{name}-{i}", daemon=True)
               for i, item in enumerate(items)]
    for t in threads:
        t.start()
    end = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, end - time.monotonic()))
    with lock:
        closed = True
        return list(results)
