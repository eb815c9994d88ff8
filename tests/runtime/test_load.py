"""A room of users: admission gate, shared work, byte budgets, readable refusals, nothing written by a GET."""

from __future__ import annotations

import asyncio
import io
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import orjson
import pytest
from PIL import Image

from app.runtime.admission import ClientGone, Gate, Job, Overloaded
from app.runtime.cache import LRUCache
from app.runtime.preprocess import decode_image, prepare
from app.runtime.service import Payload
from tests.conftest import png_bytes

# ---------------------------------------------------------------- the gate, deterministic (no timing asserts)


def run_async(main: Callable) -> None:
    """``asyncio.run(main())`` on a thread of its own (a browser test may hold this thread's event loop)."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            errors.append(exc)

    t = threading.Thread(target=target)
    t.start()
    t.join(60)
    assert not t.is_alive(), "the gate test did not finish"
    if errors:
        raise errors[0]


def _blocking_job(key: object, release: threading.Event, calls: list, value: object = "done") -> Job:
    def run() -> object:
        calls.append(key)
        assert release.wait(10), "the test never released the job"
        return value

    return Job(key, run, cache=False)


def test_full_queue_answers_overloaded_with_retry_after() -> None:
    async def main() -> None:
        gate = Gate(slots=1, queue_length=1, max_wait_s=60)
        release, calls = threading.Event(), []
        running = asyncio.ensure_future(gate.submit(_blocking_job("a", release, calls)))
        queued = asyncio.ensure_future(gate.submit(_blocking_job("b", release, calls)))
        await asyncio.sleep(0.05)
        assert gate.info()["running"] == 1 and gate.info()["queued"] == 1
        with pytest.raises(Overloaded) as err:
            await gate.submit(_blocking_job("c", release, calls))
        assert err.value.retry_after >= 1 and "try again" in str(err.value)
        release.set()
        assert await running == "done" and await queued == "done"
        assert calls == ["a", "b"], "the refused job never ran"
        assert gate.info()["rejected"] == 1 and gate.info()["running"] == 0
        gate.close()

    run_async(main)


def test_estimated_wait_past_the_limit_is_refused() -> None:
    async def main() -> None:
        gate = Gate(slots=1, queue_length=100, max_wait_s=1.0)
        gate._costs.record("slow", 5.0)  # jobs of this class have taken 5 s
        release, calls = threading.Event(), []
        first = asyncio.ensure_future(gate.submit(_blocking_job("a", release, calls)))
        await asyncio.sleep(0.05)
        with pytest.raises(Overloaded) as err:
            await gate.submit(Job("b", lambda: None, cost="slow"))
        assert err.value.retry_after >= 5
        release.set()
        await first
        gate.close()

    run_async(main)


def test_identical_jobs_in_flight_run_once_and_land_in_the_cache() -> None:
    async def main() -> None:
        cache = LRUCache(1 << 20)
        gate = Gate(slots=2, queue_length=10, max_wait_s=60, cache=cache)
        release, calls = threading.Event(), []

        def job() -> Job:
            j = _blocking_job("same", release, calls, value=b"answer")
            j.cache = True
            return j

        waiters = [asyncio.ensure_future(gate.submit(job())) for _ in range(10)]
        await asyncio.sleep(0.05)
        release.set()
        assert await asyncio.gather(*waiters) == [b"answer"] * 10
        assert calls == ["same"], "ten identical requests, one computation"
        assert gate.info()["shared"] == 9
        assert await gate.submit(job()) == b"answer" and calls == ["same"], "afterwards a cache hit"
        gate.close()

    run_async(main)


def test_a_queued_request_whose_client_left_is_never_computed() -> None:
    async def main() -> None:
        gate = Gate(slots=1, queue_length=10, max_wait_s=60)
        release, calls = threading.Event(), []
        gone = asyncio.Event()

        async def is_disconnected() -> bool:
            return gone.is_set()

        first = asyncio.ensure_future(gate.submit(_blocking_job("a", release, calls)))
        await asyncio.sleep(0.05)
        left = asyncio.ensure_future(gate.submit(_blocking_job("b", release, calls), is_disconnected))
        await asyncio.sleep(0.05)
        assert gate.info()["queued"] == 1
        gone.set()
        with pytest.raises(ClientGone):
            await left
        assert gate.info()["queued"] == 0 and gate.info()["dropped"] == 1
        release.set()
        await first
        after = await gate.submit(Job("c", lambda: "c"))
        assert after == "c" and calls == ["a"], "the abandoned job was dropped from the queue, not run"
        gate.close()

    run_async(main)


def test_a_failing_job_reaches_every_waiter_and_frees_its_slot() -> None:
    async def main() -> None:
        gate = Gate(slots=1, queue_length=4, max_wait_s=60)

        def boom() -> None:
            raise ValueError("bad image")

        results = await asyncio.gather(*(gate.submit(Job("k", boom)) for _ in range(3)), return_exceptions=True)
        assert all(isinstance(r, ValueError) for r in results)
        assert await gate.submit(Job("k", lambda: "ok")) == "ok", "a failure is not cached"
        assert gate.info()["running"] == 0
        gate.close()

    run_async(main)


# ---------------------------------------------------------------- byte budgets


def test_big_layers_get_a_thread_per_core_small_ones_the_slot_share(tmp_path: Path) -> None:
    from app.config import cpu_count
    from app.runtime.registry import LoadedModel, ModelRegistry

    reg = ModelRegistry(tmp_path, intra_op_threads=1, wide_layer_macs=1e7)
    imagenet = LoadedModel("resnet50", "init", tmp_path, {"macs": 4.1e9, "depth": 50})
    cifar = LoadedModel("resnet1202", "init", tmp_path, {"macs": 2.6e9, "depth": 1202})  # deep, but small layers
    assert reg.threads(imagenet) == cpu_count() and reg.threads(cifar) == 1
    assert ModelRegistry(tmp_path, intra_op_threads=1).threads(imagenet) == 1  # 0: the same for every model


def test_cache_evicts_by_bytes_least_recent_first() -> None:
    cache = LRUCache(max_bytes=1000)
    cache.put("a", b"x" * 400)
    cache.put("b", np.zeros(50, np.float64))  # 400 bytes
    assert cache.get("a") is not None  # "a" is now the most recent
    cache.put("c", b"y" * 400)  # 1200 > 1000: the least recent ("b") goes
    assert cache.get("b") is None and cache.get("a") is not None and cache.get("c") is not None
    assert cache.info()["bytes"] == 800 and cache.info()["evictions"] == 1
    assert cache.put("huge", b"z" * 2000) is False and cache.get("huge") is None, "never fits: not cached"
    cache.put("a", b"x" * 100)  # replacing an entry counts its new size only
    assert cache.info()["bytes"] == 500


def test_payload_is_kept_gzipped_and_counted_so() -> None:
    p = Payload.of({"v": list(range(1000))})
    cache = LRUCache(10 * p.nbytes)
    cache.put("p", p)
    assert cache.info()["bytes"] == len(p.gzipped) < p.size
    assert orjson.loads(p.body) == {"v": list(range(1000))} and p.size == len(p.body)


def test_non_finite_numbers_become_null() -> None:
    p = Payload.of({"x": float("nan"), "y": [1.5, float("inf")], "z": np.array([-np.inf, 2.0], np.float32)})
    assert orjson.loads(p.body) == {"x": None, "y": [1.5, None], "z": [None, 2.0]}


def test_jpeg_is_decoded_at_reduced_scale() -> None:
    rng = np.random.default_rng(0)
    big = Image.fromarray((rng.random((1536, 2048, 3)) * 255).astype(np.uint8), "RGB")
    buf = io.BytesIO()
    big.save(buf, format="JPEG", quality=80)
    im = decode_image(buf.getvalue(), max_pixels=20_000_000, min_side=224)
    assert im.size == (512, 384), "1/4 scale: the smallest DCT scale whose shorter side is still >= 224"
    full = decode_image(buf.getvalue(), max_pixels=20_000_000)
    assert full.size == (2048, 1536)
    pre = {"resize_shorter": 256, "crop": 224, "mean": [0.5] * 3, "std": [0.25] * 3}
    x, _ = prepare(buf.getvalue(), pre)
    assert x.shape == (3, 224, 224) and np.isfinite(x).all()


def test_pixel_cap_applies_to_what_is_decoded() -> None:
    blob = png_bytes((1200, 1000))
    with pytest.raises(ValueError, match="too large"):
        decode_image(blob, max_pixels=1_000_000)


# ---------------------------------------------------------------- through HTTP


def test_http_full_gate_is_503_with_retry_after(exported: Callable, make_client: Callable) -> None:
    exported("resnet20")
    client = make_client(graph_slots=1, queue_length=0)
    gate = client.app.state.gate
    release = threading.Event()
    # Hold the only slot from the app's own event loop, then ask for an analysis.
    fut = client.portal.start_task_soon(gate.submit, _blocking_job("hold", release, []))
    try:
        for _ in range(100):
            if gate.info()["running"] == 1:
                break
            time.sleep(0.01)
        r = client.post(
            "/api/models/resnet20/analyze?weights=init", files={"image": ("a.png", png_bytes(), "image/png")}
        )
        assert r.status_code == 503
        assert int(r.headers["retry-after"]) >= 1
        assert "busy" in r.json()["detail"] and "try again" in r.json()["detail"]
        assert client.get("/healthz").json() == {"status": "ok"}, "health never waits behind graph work"
        ready = client.get("/readyz").json()
        assert ready["gate"]["running"] == 1 and ready["gate"]["rejected"] >= 1
    finally:
        release.set()
        fut.result(timeout=10)
    r = client.post("/api/models/resnet20/analyze?weights=init", files={"image": ("a.png", png_bytes(), "image/png")})
    assert r.status_code == 200, "after the burst the same request works"


def test_identical_http_requests_compute_once(exported: Callable, make_client: Callable) -> None:
    exported("resnet20")
    client = make_client(graph_slots=2)
    service = client.app.state.service
    runs: list[int] = []
    original = service.analyze_job

    def counting(*args: object, **kwargs: object) -> Job:
        job = original(*args, **kwargs)
        inner = job.run

        def run() -> object:
            runs.append(1)
            time.sleep(0.3)  # long enough that the others arrive while it runs
            return inner()

        job.run = run
        return job

    service.analyze_job = counting
    blob = png_bytes(seed=7)
    results: list[int] = []

    def one() -> None:
        r = client.post("/api/models/resnet20/analyze?weights=init", files={"image": ("a.png", blob, "image/png")})
        results.append(r.status_code)

    threads = [threading.Thread(target=one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == [200] * 6
    assert len(runs) == 1, f"{len(runs)} computations for 6 identical requests"


def test_readyz_reports_models_queue_and_cache(exported: Callable, make_client: Callable) -> None:
    exported("resnet20")
    client = make_client(cache_bytes=10 << 20)
    r = client.post("/api/models/resnet20/analyze?weights=init", files={"image": ("a.png", png_bytes(), "image/png")})
    assert r.is_success
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and "resnet20@init" in ready["models_loaded"]
    assert ready["cache"]["entries"] == 1 and 0 < ready["cache"]["bytes"] <= ready["cache"]["max_bytes"]
    assert {"slots", "running", "queued"} <= set(ready["gate"])


def test_analysis_of_an_exploding_plain_net_sends_null_with_a_note(exported: Callable, make_client: Callable) -> None:
    """A deep plain net with He init overflows float32 in eval mode: data to explain, not a 500."""
    exported("resnet56", "init", ("stats-running", "grad-running"))
    client = make_client()
    rng = np.random.default_rng(1)
    x = Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8), "RGB")
    buf = io.BytesIO()
    x.save(buf, format="PNG")
    files = {"image": ("n.png", buf.getvalue(), "image/png")}
    for path in ("analyze", "gradients"):
        r = client.post(f"/api/models/resnet56/{path}", params={"weights": "init", "gates": "all-off"}, files=files)
        assert r.status_code == 200, r.text[:300]
        assert isinstance(r.json()["notes"], list)


def test_embed_get_writes_nothing(exported: Callable, make_client: Callable, data_dir: Path) -> None:
    exported("resnet20")
    client = make_client()
    for chart in ("prediction", "activations", "featuremaps"):
        assert client.get(f"/embed/{chart}", params={"model": "resnet20", "image": "shapes-32"}).status_code == 200
    assert not (data_dir / "images").exists() or not list((data_dir / "images").iterdir())


# ---------------------------------------------------------------- a real server: what urllib sees


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def live_server(models_dir: Path, data_dir: Path) -> Iterator[str]:
    """uvicorn on 127.0.0.1 in a thread, stopped at the end of the test."""
    import uvicorn

    from app.config import Settings
    from app.main import create_app

    settings = Settings(models_dir=models_dir, data_dir=data_dir, export_on_start=False, max_upload_bytes=1 << 20)
    port = _free_port()
    from app.serving import http_protocol

    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning", http=http_protocol(1.0)
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_urllib_reads_the_413_of_an_oversized_upload(live_server: str) -> None:
    body = b"--b\r\nContent-Disposition: form-data; name=image; filename=a.png\r\n\r\n" + b"\0" * (3 << 20)
    body += b"\r\n--b--\r\n"
    req = urllib.request.Request(
        f"{live_server}/api/images",
        data=body,
        method="POST",
        headers={"Content-Type": "multipart/form-data; boundary=b"},
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=30)
    assert err.value.code == 413
    assert "upload too large" in orjson.loads(err.value.read())["detail"]
    assert urllib.request.urlopen(f"{live_server}/healthz", timeout=5).status == 200, "the server still serves"


def test_summary_first_then_the_rest_from_the_same_measurement(exported: Callable, make_client: Callable) -> None:
    """The Explore page's first answer is a part of the whole one; asking for the whole then runs no graph again."""
    exported("resnet20")
    client = make_client()
    gate = client.app.state.gate
    blob = png_bytes(seed=11)
    q = {"weights": "init"}
    files = {"image": ("a.png", blob, "image/png")}
    first = client.post("/api/models/resnet20/analyze", params={**q, "sections": "summary"}, files=files)
    assert first.status_code == 200
    summary = first.json()
    assert summary["sections"] == "summary" and "batchnorm" not in summary and "feature_maps" not in summary
    for _ in range(200):  # the rest is computed in the background right after the first answer
        if gate.info()["completed"] >= 2:
            break
        time.sleep(0.02)
    assert gate.info()["completed"] == 2
    whole = client.post("/api/models/resnet20/analyze", params=q, files=files).json()
    assert gate.info()["completed"] == 2, "the whole analysis came from the cache"
    assert whole["sections"] == "all" and whole["batchnorm"] and whole["feature_maps"]
    assert whole["prediction"] == summary["prediction"]
    for part, full in zip(summary["layers"], whole["layers"], strict=True):
        assert {k: full[k] for k in part} == part
        assert len(full["channel_mean"]) == full["shape"][1]
    for part, full in zip(summary["blocks"], whole["blocks"], strict=True):
        assert {k: full[k] for k in part} == part and full["sample"]["x"]
    alone = make_client().post("/api/models/resnet20/analyze", params=q, files=files).json()
    assert {k: v for k, v in alone.items() if k != "timings_ms"} == {
        k: v for k, v in whole.items() if k != "timings_ms"
    }, "computed in two parts or in one, the same answer"
    bad = client.post("/api/models/resnet20/analyze", params={**q, "sections": "some"}, files=files)
    assert bad.status_code == 400 and "sections must be one of" in bad.json()["detail"]


def test_a_client_too_slow_with_its_headers_is_cut_off(live_server: str) -> None:
    port = int(live_server.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # ... and the rest never comes
        t0 = time.monotonic()
        assert s.recv(1024) == b"", "the server closed the connection"
        assert time.monotonic() - t0 < 8, "closed by the header timeout, not by the test's own"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert s.recv(1024).startswith(b"HTTP/1.1 200"), "a prompt client is served"


@pytest.mark.slow
def test_depth_sweep_with_every_cifar_model_exported_answers_in_both_bn_modes(
    exported: Callable, make_client: Callable
) -> None:
    """The sweep's default (BN running, trained weights) used to answer 500 once a plain-110 overflowed."""
    from app.paths import shipped_weights
    from app.runtime.gradients import SWEEP_DEPTHS

    kinds = ("grad-running", "grad-batch")
    for depth in SWEEP_DEPTHS:
        name = f"resnet{depth}"
        for variant in ("init", "trained", "plain"):
            if variant == "init" or shipped_weights(name, variant):
                exported(name, variant, kinds)
    client = make_client()
    for weights in ("trained", "init"):
        for bn in ("running", "batch"):
            r = client.get("/api/gradients/depth-sweep", params={"bn": bn, "weights": weights})
            assert r.status_code == 200, (weights, bn, r.text[:300])
            body = r.json()
            assert body["depths"] == list(SWEEP_DEPTHS) and len(body["rows"]) == len(SWEEP_DEPTHS)
            for row in body["rows"]:
                for kind in ("residual", "plain"):
                    v = row[kind]["first_grad"]
                    assert v is None or v >= 0
                    if v is None:
                        assert any(row["model"] in note for note in body["notes"]), "a null is explained"


def _walk(client, model: str, weights: list[str]) -> list[tuple]:  # noqa: ANN001
    """Every endpoint for every weights x BN mode x gates preset of ``model``: the answers that were not 200."""
    from app.runtime.samples import sample_bytes
    from app.specs import SPECS

    image = "noise-224" if SPECS[model].family == "imagenet" else "shapes-32"
    image_id = __import__("hashlib").sha256(sample_bytes(image)).hexdigest()
    n = SPECS[model].num_blocks
    presets = ["all-on", "all-off", ",".join("1" if i % 2 else "0" for i in range(n))]
    failures = []
    for w in weights:
        for bn in ("running", "batch"):
            for gates in presets:
                q = {"image_id": image_id, "weights": w, "bn": bn, "gates": gates}
                calls = [
                    ("POST", f"/api/models/{model}/analyze", {**q, "sections": "summary"}),
                    ("POST", f"/api/models/{model}/analyze", q),
                    ("POST", f"/api/models/{model}/gradients", q),
                    ("GET", f"/api/models/{model}/featuremap", {**q, "tap": "layer1.0", "channel": 0}),
                ]
                if bn == "running":
                    calls.append(("POST", f"/api/models/{model}/lesion", q))
                link = {"model": model, "weights": w, "bn": bn, "gates": gates, "image": image}
                calls += [("GET", f"/embed/{c}", link) for c in ("activations", "gradients", "lesion", "featuremaps")]
                calls += [("GET", f"/api/export/{c}.html", link) for c in ("activations", "residuals")]
                for method, path, params in calls:
                    r = client.request(method, path, params=params)
                    if r.status_code != 200:
                        failures.append((method, path, w, bn, gates[:12], r.status_code, r.text[:160]))
    return failures


def test_every_endpoint_for_every_setting_of_resnet20(exported: Callable, make_client: Callable) -> None:
    from app.paths import SERVING_GRAPHS

    for w in ("init", "trained", "plain"):
        exported("resnet20", w, SERVING_GRAPHS)
    assert _walk(make_client(), "resnet20", ["init", "trained", "plain"]) == []


@pytest.mark.slow
@pytest.mark.parametrize("model", ["resnet56", "resnet110"])
def test_every_endpoint_for_every_setting_of_the_deep_cifar_nets(
    model: str, exported: Callable, make_client: Callable
) -> None:
    """The shipped plain weights of the deep nets overflow: every answer must still be a 200 with notes."""
    from app.paths import SERVING_GRAPHS

    for w in ("init", "trained", "plain"):
        exported(model, w, SERVING_GRAPHS)
    assert _walk(make_client(), model, ["init", "trained", "plain"]) == []
