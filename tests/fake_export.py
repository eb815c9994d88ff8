"""A stand-in for ``resviz export --progress`` (the export worker's subprocess) that exports nothing.

argv: NAME WEIGHTS GRAPHS COUNTER GATE [SECONDS]: appends one line to COUNTER, prints the start line,
waits (at most 60 s) until the file GATE exists, prints one progress line per graph and exits 0;
with SECONDS it sleeps that long first (to run past a time limit).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    """Behave like the export CLI's progress output, waiting for the gate file."""
    name, weights, graphs, counter, gate = argv[:5]
    with open(counter, "a") as f:
        f.write(f"{name}@{weights} {graphs}\n")
    kinds = graphs.split(",")
    print(json.dumps({"event": "start", "model": name, "weights": weights, "graphs": kinds}), flush=True)
    if len(argv) > 5:
        time.sleep(float(argv[5]))
    deadline = time.monotonic() + 60
    while not Path(gate).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    for i, kind in enumerate(kinds, 1):
        event = {"event": "graph", "model": name, "weights": weights, "graph": kind, "done": i, "total": len(kinds)}
        print(json.dumps({**event, "seconds": 0.01}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
