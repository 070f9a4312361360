"""Benchmarks: every module has `run() -> list[dict]` (rows: name, value, unit, target, passed, note) and a
`__main__` that prints them; bench/run_all.py runs them all and writes bench/RESULTS.md. Shared helpers: benchlib."""
