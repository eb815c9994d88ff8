"""Scaling bench: load.py's L2 scenario against uvicorn with 1 and 2 workers and Ray Serve with 2 replicas, in one run.

    python bench/scale.py                               # all three; table on stdout, JSON in bench/results/scale.json
    python bench/scale.py --only uvicorn-2,ray-2
    python bench/scale.py --models-dir /path/to/models  # where resnet20's graphs are exported

L2 (bench/load.py): 300 distinct ResNet-20 uploads, each posted with its analysis, paced over 10 s, at most
100 at once, every request on its own connection. Each setup is ``resviz serve`` on a free port of 127.0.0.1,
started for its run and stopped after it, with the same settings (no exports, a fresh image store). Per setup:
throughput (answers 200 per second of the run), answers by status, p50/p99 latency of every answer, server
errors, and the memory of the whole process tree (uvicorn's workers; Ray's GCS, raylet, proxy, controller
and replicas) at its peak: RSS summed, and PSS (shared pages split between the processes that map them).
Ray Serve needs the cluster extra; the ray setup is skipped with a note where it is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import load  # noqa: E402

from app.paths import DEFAULT_MODELS_DIR  # noqa: E402

SETUPS = {
    "uvicorn-1": ("--workers", "1"),
    "uvicorn-2": ("--workers", "2"),
    "ray-2": ("--engine", "ray", "--replicas", "2"),
}
READY_TIMEOUT_S = 180
STOP_TIMEOUT_S = 60
MEMORY_EVERY_S = 0.5  # reading every process's smaps costs CPU the server would otherwise have


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (from /proc)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
    return out


def tree_memory_mib(pid: int) -> tuple[float, float]:
    """(RSS summed, PSS summed) over the process tree of ``pid``, MiB."""
    rss = pss = 0
    for p in process_tree(pid):
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
        except OSError:
            continue
    return rss / 1024, pss / 1024


class TreeServer(load.Server):
    """load.Server whose memory is that of its whole process tree; a longer grace period to stop (Ray)."""

    def __init__(self, env: dict[str, str], serve_args: tuple[str, ...]) -> None:
        self.pss: list[float] = []
        self._last: tuple[float, float] = (0.0, 0.0)  # (when, RSS): the tree is read twice a second at most
        super().__init__(None, env, serve_args)

    def rss_mib(self) -> float | None:
        """RSS summed over the tree (the PSS sum is kept beside it)."""
        if self.proc is None:
            return None
        now = time.monotonic()
        if now - self._last[0] < MEMORY_EVERY_S:
            return self._last[1]
        rss, pss = tree_memory_mib(self.proc.pid)
        self.pss.append(pss)
        self._last = (now, rss)
        return rss

    def stop(self) -> None:
        """SIGTERM, then wait (Ray Serve shuts its cluster down) before killing."""
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


async def wait_ready(server: TreeServer, replicas: int) -> None:
    """Until /readyz says ready on ``replicas`` distinct replicas (each opens its default sessions first)."""
    ready: set[str] = set()
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        a = await load.http(f"{server.url}/readyz")
        if a.status == 200 and json.loads(a.body)["status"] == "ready":
            ready.add(a.headers.get("x-resviz-replica", "single"))
            if len(ready) >= replicas:
                return
        await asyncio.sleep(0.2)
    raise SystemExit(f"{server.url} was not ready within {READY_TIMEOUT_S} s")


async def run_setup(name: str, models_dir: Path, seed: int) -> dict:
    """Start one setup, play L2 against it, stop it."""
    data = tempfile.mkdtemp(prefix="resviz-scale-")
    env = {
        "RESVIZ_MODELS_DIR": str(models_dir),
        "RESVIZ_DATA_DIR": data,
        "RESVIZ_EXPORT_ON_START": "false",
        "RESVIZ_EXPORT_ON_DEMAND": "false",
        "OPENBLAS_NUM_THREADS": "1",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    t0 = time.perf_counter()
    server = TreeServer(env, SETUPS[name])
    try:
        await wait_ready(server, 2 if name == "ray-2" else 1)
        start_s = time.perf_counter() - t0
        row = await load.scenario("L2", server, seed)
        errors = server.errors_in_log()
    finally:
        server.stop()
    row.update(
        setup=name,
        start_s=round(start_s, 1),
        throughput_per_s=round(row["statuses"].get("200", 0) / row["wall_s"], 1),
        pss_peak_mib=round(max(server.pss), 1) if server.pss else None,
        log_errors=len(errors),
    )
    return row


def table(rows: list[dict]) -> str:
    """The results as a fixed-width table."""
    head = (
        f"{'setup':<10} {'reqs':>5} {'wall s':>7} {'ok/s':>6} {'200':>5} {'503':>5} {'other':>5} {'5xx':>4}"
        f" {'conn':>4} {'p50 s':>7} {'p99 s':>7} {'RSS peak MiB':>12} {'PSS peak MiB':>12} {'start s':>7}"
    )
    lines = [head]
    for r in rows:
        st = r["statuses"]
        other = sum(v for k, v in st.items() if k not in ("200", "503"))
        lines.append(
            f"{r['setup']:<10} {r['requests']:>5} {r['wall_s']:>7} {r['throughput_per_s']:>6} {st.get('200', 0):>5}"
            f" {st.get('503', 0):>5} {other:>5} {r['server_errors']:>4} {r['connection_errors']:>4} {r['p50_s']:>7}"
            f" {r['p99_s']:>7} {r['rss_peak_mib']!s:>12} {r['pss_peak_mib']!s:>12} {r['start_s']:>7}"
        )
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> list[dict]:
    """Each setup in turn."""
    rows = []
    for name in [n.strip() for n in args.only.split(",") if n.strip()]:
        if name not in SETUPS:
            raise SystemExit(f"unknown setup {name!r}; choose from {', '.join(SETUPS)}")
        if name.startswith("ray") and importlib.util.find_spec("ray") is None:
            print(f"{name}: skipped, Ray Serve is not installed (pip install -e '.[cluster]')", flush=True)
            continue
        row = await run_setup(name, Path(args.models_dir), args.seed)
        rows.append(row)
        print(table([row]).splitlines()[-1], flush=True)
    return rows


def main() -> int:
    """Parse arguments, run, print the table, write the JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default=",".join(SETUPS), help=f"comma list of setups ({', '.join(SETUPS)})")
    p.add_argument("--models-dir", default=os.environ.get("RESVIZ_MODELS_DIR", str(DEFAULT_MODELS_DIR)))
    p.add_argument("--seed", type=int, default=int(time.time()) % 100_000, help="photo seed (new photos each run)")
    p.add_argument("--out", default=str(load.RESULTS / "scale.json"))
    args = p.parse_args()
    rows = asyncio.run(main_async(args))
    print()
    print(table(rows))
    load.write_json(rows, Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
