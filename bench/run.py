"""resviz benchmarks: analysis and gradient graphs against bare ORT and torch baselines.

Prints a table and writes bench/results/bench.json. Run with `make bench` (2-core machine:
OPENBLAS_NUM_THREADS=1 as in the server). Every row is measured in this one process run, in
interleaved rounds (bare, graphs, analysis, gradients and the torch baselines once each per
round), so ratios compare like with like.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.manifest import exported_kinds  # noqa: E402
from app.paths import DEFAULT_MODELS_DIR  # noqa: E402
from app.runtime.analysis import analyze  # noqa: E402
from app.runtime.export_jobs import default_command  # noqa: E402
from app.runtime.gradients import finish_norms  # noqa: E402
from app.runtime.registry import ModelRegistry  # noqa: E402
from app.runtime.service import Payload  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def interleaved_ms(fns: dict[str, Callable[[], object]], repeat: int, warmup: int = 2) -> dict[str, float]:
    """Median wall time of each function in milliseconds, timed in rounds that run each once.

    Interleaving keeps slow drifts of the machine (other load, clock changes) out of the ratios.
    """
    times: dict[str, list[float]] = {k: [] for k in fns}
    for i in range(warmup + repeat):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            if i >= warmup:
                times[k].append(time.perf_counter() - t)
    return {k: 1e3 * statistics.median(v) for k, v in times.items()}


def median_ms(fn, repeat: int, warmup: int = 2) -> float:  # noqa: ANN001
    """Median wall time of ``fn()`` in milliseconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def ensure(models_dir: Path, name: str, kinds: tuple[str, ...]) -> None:
    """Export missing graphs (init weights) in a subprocess, as the server's export worker does."""
    missing = [k for k in kinds if k not in exported_kinds(models_dir, name, "init")]
    if missing:
        subprocess.run(
            default_command(models_dir)(name, "init", missing), check=True, cwd=ROOT, stdout=subprocess.DEVNULL
        )


def torch_hooks_baseline(name: str, x: np.ndarray) -> Callable[[], None]:
    """Forward hooks on the same taps computing the same statistics in torch (the usual way)."""
    import torch

    from app.nets.resnet import build

    torch.set_num_threads(2)
    model = build(name)
    model.bn_mode = "running"
    xt = torch.from_numpy(x)

    def stats(t: torch.Tensor) -> None:
        c = t.shape[1]
        a = t.transpose(0, 1).reshape(c, -1)
        a.mean(1), a.std(1, unbiased=False), a.amin(1), a.amax(1), (a == 0).sum()
        t.norm()
        flat = t.flatten()
        step = max(1, flat.numel() // 16384)
        s = flat[::step]
        lo, hi = torch.quantile(s, torch.tensor([0.001, 0.999]))
        torch.histc(s, bins=64, min=float(lo), max=float(hi))

    def run() -> None:
        with torch.inference_mode():
            model(xt, rec=lambda _n, t: stats(t))

    return run


def torch_autograd_baseline(name: str, x: np.ndarray) -> Callable[[], None]:
    """Forward + backward with autograd and per-layer weight-gradient norms."""
    import torch

    from app.nets.resnet import build

    model = build(name)
    model.bn_mode = "running"
    xt = torch.from_numpy(x)

    def run() -> None:
        model.zero_grad(set_to_none=True)
        logits = model(xt)
        loss = torch.nn.functional.cross_entropy(logits, logits.argmax(1))
        loss.backward()
        [p.grad.norm() for p in model.parameters() if p.grad is not None]

    return run


def analysis_rows(models_dir: Path, names: list[str], repeat: int, with_torch: bool) -> list[dict]:
    """Bare ORT vs full analysis vs torch hooks; payload size; gradient graph vs forward."""
    reg = ModelRegistry(models_dir)
    rows = []
    for name in names:
        ensure(models_dir, name, ("running", "stats-running", "bare", "grad-running"))
        model = reg.get(name, "init")
        size = model.manifest["input_size"]
        x = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
        gates = np.ones(model.num_blocks, np.float32)
        bare = reg.session(model, "bare")
        taps = reg.session(model, "running")
        stats = reg.session(model, "stats-running")
        grad = reg.session(model, "grad-running")
        feed = {"image": x, "gates": gates}
        target = np.full(1, -1, np.int64)
        grad_names = [o.name for o in grad.get_outputs()]

        def grad_norms() -> dict[str, float]:
            """The gradient graph run and its norms finished, as the gradients endpoint does."""
            outs = grad.run(None, {**feed, "target": target})  # noqa: B023
            return finish_norms(dict(zip(grad_names, outs, strict=True)))  # noqa: B023

        fns: dict[str, Callable[[], object]] = {
            "bare": lambda: bare.run(["logits"], feed),  # noqa: B023
            "taps": lambda: taps.run(None, feed),  # noqa: B023
            "stats": lambda: stats.run(None, feed),  # noqa: B023
            "analysis": lambda: analyze(reg, model, x, gates, "running"),  # noqa: B023
            "grad": grad_norms,
        }
        if with_torch:
            fns["torch_hooks"] = torch_hooks_baseline(name, x)
            fns["torch_autograd"] = torch_autograd_baseline(name, x)
        t = interleaved_ms(fns, repeat)
        result = analyze(reg, model, x, gates, "running")
        t_json = median_ms(lambda: Payload.of(result), max(3, repeat // 3), warmup=1)  # noqa: B023
        payload = Payload.of(result)
        row = {
            "model": name,
            "bare_ms": t["bare"],
            "taps_graph_ms": t["taps"],
            "stats_graph_ms": t["stats"],
            "analysis_ms": t["analysis"],
            "analysis_ratio": t["analysis"] / t["bare"],
            "json_gzip_ms": t_json,
            "payload_bytes": payload.size,
            "payload_gzip_bytes": len(payload.gzipped),
            "grad_ms": t["grad"],
            "grad_ratio": t["grad"] / t["bare"],
        }
        if with_torch:
            row["torch_hooks_ms"] = t["torch_hooks"]
            row["speedup_vs_torch_hooks"] = t["torch_hooks"] / t["analysis"]
            row["torch_autograd_ms"] = t["torch_autograd"]
            row["torch_autograd_ratio"] = t["torch_autograd"] / t["bare"]
        rows.append(row)
    return rows


def multipart_image(blob: bytes, filename: str, ctype: str) -> tuple[bytes, str]:
    """A multipart/form-data body holding one file in the field 'image', and its content type."""
    boundary = "resvizbench"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{filename}"\r\n'
    body = (head + f"Content-Type: {ctype}\r\n\r\n").encode() + blob + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def _rss_kib(pid: int) -> tuple[int, int]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def server_rows(models_dir: Path, name: str, requests: int) -> dict:
    """Start the real server, post ``requests`` analyses of distinct images, track its RSS; time cache hits."""
    import socket
    import tempfile

    from PIL import Image

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data_dir = tempfile.mkdtemp(prefix="resviz-bench-")
    code = (
        "import uvicorn; from app.main import create_app; from app.config import Settings; "
        f"uvicorn.run(create_app(Settings(models_dir={str(models_dir)!r}, data_dir={data_dir!r}, "
        f"export_on_start=False, upload_burst=10_000)), host='127.0.0.1', port={port}, log_level='warning')"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(base + "/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        rng = np.random.default_rng(0)
        rss = []

        def post(img: bytes) -> bytes:
            body, ctype = multipart_image(img, "x.png", "image/png")
            req = urllib.request.Request(
                f"{base}/api/models/{name}/analyze?weights=init",
                data=body,
                method="POST",
                headers={"Content-Type": ctype, "Accept-Encoding": "gzip"},
            )
            with urllib.request.urlopen(req, timeout=120) as r:
                return r.read()

        import io

        first = None
        for i in range(requests):
            buf = io.BytesIO()
            Image.fromarray((rng.random((240, 320, 3)) * 255).astype(np.uint8)).save(buf, format="PNG")
            img = buf.getvalue()
            first = first or img
            post(img)
            if i % 10 == 9:
                rss.append(_rss_kib(proc.pid)[0])
        hit_ms = median_ms(lambda: post(first), 20, warmup=1)
        now, peak = _rss_kib(proc.pid)
        e2e = http_vs_bare(base, models_dir, name, rounds=12)
        return {
            **e2e,
            "model": name,
            "requests": requests,
            "rss_mib_every_10": [r / 1024 for r in rss],
            "rss_mib_end": now / 1024,
            "peak_rss_mib": peak / 1024,
            "cache_hit_ms": hit_ms,
            "payload_gzip_bytes": len(post(first)),
        }
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _wait_idle(base: str, timeout: float = 30.0) -> None:
    """Until the server's admission gate runs and queues nothing (read from /readyz)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with urllib.request.urlopen(f"{base}/readyz", timeout=10) as r:
            gate = json.loads(r.read())["gate"]
        if gate["running"] == 0 and gate["queued"] == 0:
            return
        time.sleep(0.02)
    raise RuntimeError("the server did not go idle")


def http_vs_bare(base: str, models_dir: Path, name: str, rounds: int) -> dict:
    """HTTP analyze end to end, as the Explore page asks for it when the user presses Analyze, against a bare
    ORT forward of the same network in this process, in interleaved rounds (a new stored image each round)."""
    import io

    from PIL import Image

    from app.runtime.preprocess import prepare

    reg = ModelRegistry(models_dir)
    model = reg.get(name, "init")
    bare = reg.session(model, "bare")
    gates = np.ones(model.num_blocks, np.float32)
    rng = np.random.default_rng(1)
    ids, inputs = [], []
    for _ in range(rounds + 2):
        buf = io.BytesIO()
        Image.fromarray((rng.random((480, 640, 3)) * 255).astype(np.uint8)).save(buf, format="JPEG", quality=85)
        blob = buf.getvalue()
        inputs.append(prepare(blob, model.manifest["preprocessing"])[0][None])
        body, ctype = multipart_image(blob, "p.jpg", "image/jpeg")
        req = urllib.request.Request(f"{base}/api/images", data=body, method="POST", headers={"Content-Type": ctype})
        with urllib.request.urlopen(req, timeout=60) as r:
            ids.append(json.loads(r.read())["id"])
    http_ms, bare_ms = [], []
    for i, image_id in enumerate(ids):
        _wait_idle(base)  # the previous answer's follow-up (the rest of its analysis) must not share the cores
        t = time.perf_counter()
        bare.run(["logits"], {"image": inputs[i], "gates": gates})
        dt_bare = time.perf_counter() - t
        req = urllib.request.Request(
            f"{base}/api/models/{name}/analyze?image_id={image_id}&weights=init&{EXPLORE_QUERY}",
            method="POST",
            headers={"Accept-Encoding": "gzip"},
        )
        t = time.perf_counter()
        with urllib.request.urlopen(req, timeout=120) as r:
            size = len(r.read())
        dt_http = time.perf_counter() - t
        if i >= 2:  # the first two warm the sessions up
            bare_ms.append(1e3 * dt_bare)
            http_ms.append(1e3 * dt_http)
    ratios = [h / b for h, b in zip(http_ms, bare_ms, strict=True)]
    return {
        "http_analyze_ms": statistics.median(http_ms),
        "http_bare_ms": statistics.median(bare_ms),
        "http_ratio_median": statistics.median(ratios),
        "http_first_answer_gzip_bytes": size,
    }


EXPLORE_QUERY = "sections=summary"  # what static/js/main.js asks for first


def main() -> int:
    """Run the benchmarks, print the table, write JSON."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--models", default="resnet50,resnet18,resnet20")
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--requests", type=int, default=100, help="analyses sent to the server for the RSS row")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--no-server", action="store_true")
    ap.add_argument("--no-explain", action="store_true", help="leave out the explanation rows (bench/explain.py)")
    ap.add_argument("--models-dir", default=str(DEFAULT_MODELS_DIR))
    args = ap.parse_args()
    models_dir = Path(args.models_dir)
    names = args.models.split(",")
    rows = analysis_rows(models_dir, names, args.repeat, not args.no_torch)
    print(
        f"\nresviz bench ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, batch 1, "
        f"median of {args.repeat})"
    )
    hdr = (
        f"{'model':<10} {'bare ORT':>9} {'taps':>8} {'stats':>8} {'analysis':>9} {'x bare':>7} {'torch hooks':>12} "
        f"{'speedup':>8} {'json+gz':>8} {'gzip KB':>8} {'grad':>8} {'x bare':>7} {'autograd':>9} {'x bare':>7}"
    )
    print(hdr)
    for r in rows:
        th = f"{r['torch_hooks_ms']:10.1f}ms" if "torch_hooks_ms" in r else f"{'-':>12}"
        sp = f"{r['speedup_vs_torch_hooks']:7.2f}x" if "torch_hooks_ms" in r else f"{'-':>8}"
        ag = f"{r['torch_autograd_ms']:7.1f}ms" if "torch_autograd_ms" in r else f"{'-':>9}"
        agr = f"{r['torch_autograd_ratio']:6.2f}x" if "torch_autograd_ms" in r else f"{'-':>7}"
        print(
            f"{r['model']:<10} {r['bare_ms']:7.1f}ms {r['taps_graph_ms']:6.1f}ms {r['stats_graph_ms']:6.1f}ms "
            f"{r['analysis_ms']:7.1f}ms "
            f"{r['analysis_ratio']:6.2f}x {th} {sp} {r['json_gzip_ms']:6.1f}ms {r['payload_gzip_bytes'] / 1024:8.0f} "
            f"{r['grad_ms']:6.1f}ms {r['grad_ratio']:6.2f}x {ag} {agr}"
        )
    out = {"rows": rows, "python": sys.version.split()[0], "cores": os.cpu_count(), "repeat": args.repeat}
    if not args.no_explain:
        from bench.explain import explain_rows, print_rows

        out["explain"] = explain_rows(models_dir, names, args.repeat, not args.no_torch, interleaved_ms, ensure)
        print_rows(out["explain"])
    if not args.no_server:
        srv = server_rows(models_dir, names[0], args.requests)
        out["server"] = srv
        print(
            f"\nserver, {srv['model']}: {srv['requests']} analyses; RSS every 10 (MiB): "
            f"{', '.join(f'{v:.0f}' for v in srv['rss_mib_every_10'])}; peak {srv['peak_rss_mib']:.0f} MiB; "
            f"cache hit {srv['cache_hit_ms']:.2f} ms; payload {srv['payload_gzip_bytes'] / 1024:.0f} KB gzip"
        )
        print(
            f"HTTP analyze end to end, {srv['model']} (as the Explore page asks): {srv['http_analyze_ms']:.1f} ms "
            f"against a bare forward of {srv['http_bare_ms']:.1f} ms in the same rounds: "
            f"{srv['http_ratio_median']:.2f}x (median of per-round ratios); first answer "
            f"{srv['http_first_answer_gzip_bytes'] / 1024:.0f} KB gzip"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench.json").write_text(json.dumps(out, indent=2))
    print(f"\nwrote {RESULTS / 'bench.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
