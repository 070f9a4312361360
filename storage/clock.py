"""One clock for the whole program, so tests and screenshots can freeze time."""
import time

_frozen: float | None = None


def now() -> float:
    return _frozen if _frozen is not None else time.time()


def freeze(at: float | None) -> None:
    """Freeze `now()` at `at` (epoch seconds); `None` unfreezes."""
    global _frozen
    _frozen = at
