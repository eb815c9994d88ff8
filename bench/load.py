"""Load bench: a lecture hall against `resviz serve` on 127.0.0.1 (bounded in count and time, stops by itself).

    python bench/load.py                 # every scenario; table on stdout, JSON in bench/results/load.json
    python bench/load.py --only L1,L2    # some of them
    python bench/load.py --url http://127.0.0.1:8000   # an already running server (RSS then not measured)

Scenarios (each request is one student; each has its own connection, as browsers on many machines do):
  L1    300 students open the same embed link within 10 s: the embed page, then the analysis it reads
        (cold: the first one computes, the others share its work or hit the cache).
  L2    300 distinct ResNet-20 uploads (a photo each, posted with the analysis) paced over 10 s,
        at most 100 at once.
  L3    60 distinct ResNet-50 uploads, 20 at once.
  soak  1,000 analyses over ResNet-20/56/18/50 from a pool of 200 photos, 8 at once.
For each: answers by status, latency p50/p95/p99, the slowest /healthz during the run (polled every
50 ms), and the server's RSS before, at its peak and after. Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SCENARIO_DEADLINE_S = 300  # no scenario runs longer than this, whatever happens
REQUEST_TIMEOUT_S = 60


# ---------------------------------------------------------------- a minimal HTTP/1.1 client on asyncio streams


@dataclass
class Answer:
    status: int
    seconds: float
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


async def http(url: str, method: str = "GET", body: bytes = b"", headers: dict[str, str] | None = None) -> Answer:
    """One request on its own connection (Connection: close); status 0 for a connection error."""
    parts = urlsplit(url)
    assert parts.hostname in ("127.0.0.1", "localhost"), "the load bench talks to this machine only"
    t0 = time.perf_counter()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(parts.hostname, parts.port), 10)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        head = [f"{method} {path} HTTP/1.1", f"Host: {parts.netloc}", "Connection: close", "Accept-Encoding: gzip"]
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if body or method == "POST":
            head.append(f"Content-Length: {len(body)}")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(-1), REQUEST_TIMEOUT_S)
        writer.close()
    except (OSError, TimeoutError, asyncio.IncompleteReadError):
        return Answer(0, time.perf_counter() - t0)
    dt = time.perf_counter() - t0
    head_end = raw.find(b"\r\n\r\n")
    if head_end < 0:
        return Answer(0, dt)
    lines = raw[:head_end].decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:] if ":" in line)}
    return Answer(status, dt, hdrs, raw[head_end + 4 :])


def multipart(fields: dict[str, tuple[str, bytes, str]]) -> tuple[bytes, str]:
    """A multipart/form-data body and its content type."""
    boundary = "resvizbench"
    out = io.BytesIO()
    for name, (filename, data, ctype) in fields.items():
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'.encode())
        out.write(f"Content-Type: {ctype}\r\n\r\n".encode() + data + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


def photo(seed: int, size: tuple[int, int] = (640, 480)) -> bytes:
    """A distinct JPEG 'photo': smooth random colour fields plus noise (about 40-80 KB)."""
    rng = np.random.default_rng(seed)
    w, h = size
    small = rng.random((6, 8, 3)) * 255
    im = Image.fromarray(small.astype(np.uint8), "RGB").resize((w, h), Image.Resampling.BICUBIC)
    a = np.asarray(im, np.float32) + rng.normal(0, 12, (h, w, 3))
    buf = io.BytesIO()
    Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "RGB").save(buf, format="JPEG", quality=85)
    return buf.getvalue()


# ---------------------------------------------------------------- the server and what it costs


class Server:
    """`resviz serve` in a subprocess on a free loopback port (or an existing URL)."""

    def __init__(self, url: str | None, env: dict[str, str], serve_args: tuple[str, ...] = ()) -> None:
        self.proc: subprocess.Popen | None = None
        if url:
            self.url = url.rstrip("/")
            return
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        cmd = [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port), *serve_args]
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **env}, stdout=self.log, stderr=self.log)
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise SystemExit(f"the server exited: {self.log.read().decode()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", port), 0.2):
                    break
            except OSError:
                time.sleep(0.2)

    def rss_mib(self) -> float | None:
        """The server process's resident memory, MiB (None for an outside server)."""
        if self.proc is None:
            return None
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            return None
        return None

    def errors_in_log(self) -> list[str]:
        """Tracebacks and 5xx lines the server logged."""
        if self.proc is None:
            return []
        self.log.seek(0)
        text = self.log.read().decode(errors="replace")
        return [ln for ln in text.splitlines() if "Traceback" in ln or '" 500' in ln]

    def stop(self) -> None:
        """End the server."""
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class Watch:
    """Polls /healthz every 50 ms and the server's RSS every 100 ms while a scenario runs."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.health: list[float] = []
        self.health_failures = 0
        self.rss: list[float] = []
        self._stop = threading.Event()

    async def _health(self) -> None:
        while not self._stop.is_set():
            a = await http(f"{self.server.url}/healthz")
            self.health.append(a.seconds)
            self.health_failures += a.status != 200
            await asyncio.sleep(0.05)

    def _rss(self) -> None:
        while not self._stop.is_set():
            r = self.server.rss_mib()
            if r is not None:
                self.rss.append(r)
            time.sleep(0.1)

    async def __aenter__(self) -> Watch:
        self._task = asyncio.ensure_future(self._health())
        self._thread = threading.Thread(target=self._rss, daemon=True)
        self._thread.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        await self._task
        self._thread.join(2)


# ---------------------------------------------------------------- scenarios


def analyze_request(url: str, model: str, blob: bytes) -> tuple[str, bytes, dict[str, str]]:
    """The analysis request the Explore page makes, with the photo posted in the same request."""
    body, ctype = multipart({"image": ("photo.jpg", blob, "image/jpeg")})
    return f"{url}/api/models/{model}/analyze", body, {"Content-Type": ctype}


async def paced(jobs: list, over_s: float, at_once: int) -> list[Answer]:
    """Run coroutine factories, starting them evenly over ``over_s`` seconds, at most ``at_once`` in flight."""
    sem = asyncio.Semaphore(at_once)
    start = time.perf_counter()

    async def one(i: int, make) -> Answer:  # noqa: ANN001
        delay = start + (over_s * i / max(1, len(jobs))) - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        async with sem:
            return await make()

    return await asyncio.wait_for(asyncio.gather(*(one(i, j) for i, j in enumerate(jobs))), SCENARIO_DEADLINE_S)


async def embed_student(url: str, link: str) -> Answer:
    """Open an embed link as a browser does: the page, then the analysis it draws from."""
    t0 = time.perf_counter()
    page = await http(f"{url}{link}")
    if page.status != 200:
        return page
    marker = b'id="embed-config"'
    at = page.body.find(marker)
    cfg = json.loads(page.body[page.body.find(b">", at) + 1 : page.body.find(b"</script>", at)])
    q = f"image_id={cfg['image_id']}&gates={cfg['gates']}&bn={cfg['bn']}"
    a = await http(f"{url}/api/models/{cfg['model']}/analyze?{q}", "POST")
    a.seconds = time.perf_counter() - t0
    return a


async def scenario(name: str, server: Server, seed: int) -> dict:
    """Run one scenario and summarise it."""
    url = server.url
    if name == "L1":
        link = "/embed/activations?model=resnet20&image=set-disc&bn=batch"  # a link nobody opened yet
        jobs = [lambda: embed_student(url, link) for _ in range(300)]
        over, at_once = 10.0, 300
    elif name == "L2":
        blobs = [photo(seed + i) for i in range(300)]
        jobs = [lambda b=b: http(*_post(analyze_request(url, "resnet20", b))) for b in blobs]
        over, at_once = 10.0, 100
    elif name == "L3":
        blobs = [photo(seed + 1000 + i) for i in range(60)]
        jobs = [lambda b=b: http(*_post(analyze_request(url, "resnet50", b))) for b in blobs]
        over, at_once = 0.0, 20
    elif name == "soak":
        pool = [photo(seed + 5000 + i) for i in range(200)]
        rng = np.random.default_rng(seed)
        models = ["resnet20", "resnet56", "resnet18", "resnet50"]
        picks = [(models[i % 4], pool[int(rng.integers(len(pool)))]) for i in range(1000)]
        jobs = [lambda m=m, b=b: http(*_post(analyze_request(url, m, b))) for m, b in picks]
        over, at_once = 0.0, 8
    else:
        raise SystemExit(f"unknown scenario {name!r}")
    before = server.rss_mib()
    cache_before = await _cache_mib(url)
    async with Watch(server) as watch:
        t0 = time.perf_counter()
        answers = await paced(jobs, over, at_once)
        wall = time.perf_counter() - t0
    after = server.rss_mib()
    row = summarise(name, answers, wall, watch, before, after)
    cache_after = await _cache_mib(url)
    row["cache_growth_mib"] = _r(cache_after - cache_before) if None not in (cache_before, cache_after) else None
    return row


async def _cache_mib(url: str) -> float | None:
    """Bytes in the server's caches (answers and tap tensors), from /readyz, in MiB."""
    a = await http(f"{url}/readyz")
    if a.status != 200:
        return None
    ready = json.loads(a.body)
    return (ready["cache"]["bytes"] + ready["taps_cache"]["bytes"]) / 2**20


def _post(req: tuple[str, bytes, dict[str, str]]) -> tuple[str, str, bytes, dict[str, str]]:
    url, body, headers = req
    return url, "POST", body, headers


def summarise(name: str, answers: list[Answer], wall: float, watch: Watch, before: float | None, after: float | None):  # noqa: ANN201
    """Counts by status, latency percentiles, health, memory."""
    statuses: dict[str, int] = {}
    for a in answers:
        statuses[str(a.status)] = statuses.get(str(a.status), 0) + 1
    ok = np.array([a.seconds for a in answers if a.status == 200])
    every = np.array([a.seconds for a in answers])
    refused = [a for a in answers if a.status == 503]
    rss = watch.rss
    # soak: memory growth after warm-up (the first fifth of the run)
    warm = rss[len(rss) // 5] if len(rss) > 5 else None
    return {
        "scenario": name,
        "requests": len(answers),
        "wall_s": round(wall, 2),
        "statuses": statuses,
        "connection_errors": statuses.get("0", 0),
        "server_errors": sum(v for k, v in statuses.items() if k.startswith("5") and k != "503"),
        "refused_without_retry_after": sum(1 for a in refused if "retry-after" not in a.headers),
        "p50_s": _pct(every, 50),
        "p95_s": _pct(every, 95),
        "p99_s": _pct(every, 99),
        "ok_p99_s": _pct(ok, 99),
        "healthz_max_ms": round(1e3 * max(watch.health), 1) if watch.health else None,
        "healthz_failures": watch.health_failures,
        "rss_before_mib": _r(before),
        "rss_peak_mib": _r(max(rss)) if rss else None,
        "rss_after_mib": _r(after),
        "rss_growth_after_warmup_mib": _r(rss[-1] - warm) if warm is not None else None,
    }


def _pct(a: np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(a, q)), 3) if a.size else None


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


def table(rows: list[dict]) -> str:
    """The results as a fixed-width table."""
    head = (
        f"{'scenario':<8} {'reqs':>5} {'wall s':>7} {'200':>5} {'503':>5} {'other':>5} {'5xx':>4} {'conn':>4}"
        f" {'p50 s':>7} {'p95 s':>7} {'p99 s':>7} {'health ms':>9} {'RSS MiB before/peak/after':>27}"
        f" {'RSS+MiB':>7} {'cache+MiB':>9}"
    )
    lines = [head]
    for r in rows:
        st = r["statuses"]
        other = sum(v for k, v in st.items() if k not in ("200", "503"))
        mem = f"{r['rss_before_mib']}/{r['rss_peak_mib']}/{r['rss_after_mib']}"
        lines.append(
            f"{r['scenario']:<8} {r['requests']:>5} {r['wall_s']:>7} {st.get('200', 0):>5} {st.get('503', 0):>5}"
            f" {other:>5} {r['server_errors']:>4} {r['connection_errors']:>4} {r['p50_s']:>7} {r['p95_s']:>7}"
            f" {r['p99_s']:>7} {r['healthz_max_ms']:>9} {mem:>27} {str(r['rss_growth_after_warmup_mib']):>7}"
            f" {str(r['cache_growth_mib']):>9}"
        )
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> list[dict]:
    """Start the server, run the scenarios in turn, stop the server."""
    data = tempfile.mkdtemp(prefix="resviz-load-")
    env = {"RESVIZ_DATA_DIR": data, "RESVIZ_EXPORT_ON_START": "false", "OPENBLAS_NUM_THREADS": "1"}
    server = Server(args.url, env)
    rows = []
    try:
        for _ in range(600):  # the server opens its default models' sessions first (at most a minute)
            a = await http(f"{server.url}/readyz")
            if a.status == 200 and json.loads(a.body)["status"] == "ready":
                break
            await asyncio.sleep(0.1)
        for name in args.only.split(","):
            row = await scenario(name.strip(), server, args.seed)
            rows.append(row)
            print(table([row]).splitlines()[-1], flush=True)
        errors = server.errors_in_log()
        if errors:
            print(f"server log: {len(errors)} tracebacks or 500s, e.g. {errors[0]}")
    finally:
        server.stop()
    return rows


def write_json(rows: list[dict], out: Path) -> None:
    """Write the scenarios' rows, with the time, as JSON to ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"time": time.strftime("%Y-%m-%d %H:%M"), "rows": rows}, indent=1))


def report(rows: list[dict], out: Path) -> None:
    """Print the table of ``rows`` and write them as JSON to ``out``."""
    print()
    print(table(rows))
    write_json(rows, out)


def main() -> int:
    """Parse arguments, run, print the table, write the JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default="L1,L2,L3,soak", help="comma list of scenarios (L1, L2, L3, soak)")
    p.add_argument("--url", default=None, help="an already running server on 127.0.0.1 (default: start one)")
    p.add_argument("--seed", type=int, default=int(time.time()) % 100_000, help="photo seed (new photos each run)")
    p.add_argument("--out", default=str(RESULTS / "load.json"))
    args = p.parse_args()
    if args.url and urlsplit(args.url).hostname not in ("127.0.0.1", "localhost"):
        raise SystemExit("the load bench talks to 127.0.0.1 only")
    report(asyncio.run(main_async(args)), Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
