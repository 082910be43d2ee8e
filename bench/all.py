"""Every benchmark, one after another, each in its own process; then their verdicts together.

    python -m bench.all [--only cli,wake]      (make bench)

Each benchmark prints its ratio on its last line; this prints those lines again at the end
and exits non-zero if any target was missed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time

BENCHMARKS = ("transitions", "router", "gateway", "cli", "wake", "telegram", "scale", "sandbox", "gate_cost")


def run(name: str) -> tuple[str, float]:
    """One benchmark: its report streams through; its logs (stderr) are shown only if it fails."""
    print(f"== bench.{name}", flush=True)
    started = time.monotonic()
    with tempfile.TemporaryFile("w+") as logs:
        process = subprocess.Popen(
            [sys.executable, "-m", f"bench.{name}"], stdout=subprocess.PIPE, stderr=logs, text=True
        )
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            print(line, end="", flush=True)
            lines.append(line.rstrip())
        code = process.wait()
        if code != 0:
            logs.seek(0)
            print("".join(logs.readlines()[-20:]), end="")
    last = lines[-1] if lines and code == 0 else f"bench.{name} exited with {code} FAIL"
    return last, time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="Comma-separated names: " + ", ".join(BENCHMARKS))
    only = parser.parse_args().only
    names = only.split(",") if only else list(BENCHMARKS)
    unknown = set(names) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    results = [(name, *run(name)) for name in names]
    print("\n== summary")
    for name, last, seconds in results:
        print(f"{name:12s} {seconds:6.0f}s  {last}")
    return 1 if any(last.endswith("FAIL") for _, last, _ in results) else 0


if __name__ == "__main__":
    sys.exit(main())
