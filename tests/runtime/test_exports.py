"""The export queue: serve first, export beside it (one worker, one subprocess per graph set, 503 while pending)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from app.paths import SERVING_GRAPHS
from app.runtime.export_jobs import folder_lock
from app.runtime.exports import ANALYSIS_GRAPHS, DEFAULTS, START_PAGE, USER, ExportQueue

FAKE = str(Path(__file__).resolve().parents[1] / "fake_export.py")


class Fake:
    """The fake export command, its gate file and its log of runs."""

    def __init__(self, tmp: Path, sleep: float | None = None) -> None:
        self.counter = tmp / "runs.txt"
        self.gate = tmp / "gate"
        self.sleep = sleep

    def command(self, name: str, variant: str, kinds: list[str]) -> list[str]:
        """argv of one fake export."""
        extra = [str(self.sleep)] if self.sleep is not None else []
        return [sys.executable, FAKE, name, variant, ",".join(kinds), str(self.counter), str(self.gate), *extra]

    def runs(self) -> list[str]:
        """One line per subprocess started."""
        return self.counter.read_text().splitlines() if self.counter.exists() else []

    def release(self) -> None:
        """Let the running fake export finish."""
        self.gate.touch()


def _wait(pred: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def fresh_client(tmp_path: Path) -> Iterator[Callable[..., tuple[TestClient, Fake]]]:
    """A client on an empty models dir whose exports run the fake command."""
    made: list[TestClient] = []

    def _make(sleep: float | None = None, **overrides: object) -> tuple[TestClient, Fake]:
        fake = Fake(tmp_path, sleep)
        settings = Settings(
            models_dir=tmp_path / "models", data_dir=tmp_path / "data", export_on_start=False, **overrides
        )
        client = TestClient(create_app(settings, export_command=fake.command))
        client.__enter__()
        made.append(client)
        return client, fake

    yield _make
    for c in made:
        c.__exit__(None, None, None)


def test_one_export_however_many_requests_ask(fresh_client: Callable) -> None:
    client, fake = fresh_client()
    urls = ["/api/models/resnet20?weights=init"] * 12 + ["/api/models/resnet20/analyze?weights=init"] * 4

    def ask(url: str):  # noqa: ANN202
        return client.post(url) if url.endswith("analyze") or "analyze?" in url else client.get(url)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, urls))
    assert _wait(lambda: len(fake.runs()) == 1), "the worker started the export"
    more = [client.get("/api/models/resnet20?weights=init") for _ in range(5)]
    for r in answers[:12] + more:
        assert r.status_code == 503, r.text
        assert int(r.headers["retry-after"]) >= 1
        body = r.json()
        assert "resnet20 (weights init)" in body["detail"] and "retries by itself" in body["detail"]
        assert body["export"]["model"] == "resnet20" and body["export"]["weights"] == "init"
    # the analyses have no image: either 400 (no image) once the model is ready, or 503 while it is exported
    assert {r.status_code for r in answers[12:]} <= {503, 400}

    listing = client.get("/api/exports").json()
    assert listing["busy"] is True
    assert [p["key"] for p in listing["pending"]] == ["resnet20@init"]
    job = listing["pending"][0]
    assert job["state"] == "running" and 0 <= job["progress"] < 1 and job["estimate_s"] > 0
    assert job["graphs"][:2] == ["running", "stats-running"], "what an analysis needs comes first"
    assert set(job["graphs"]) == set(SERVING_GRAPHS)

    fake.release()
    assert _wait(lambda: not client.get("/api/exports").json()["busy"])
    listing = client.get("/api/exports").json()
    assert listing["recent"][0]["state"] == "done" and listing["recent"][0]["progress"] == 1
    assert len(fake.runs()) == 1, f"exactly one subprocess for the model: {fake.runs()}"
    assert client.app.state.exports.runs == 1


def test_progress_lines_move_the_fraction(tmp_path: Path) -> None:
    queue = ExportQueue(tmp_path / "models")
    job = queue.enqueue("resnet20", "init", SERVING_GRAPHS, USER)
    assert job is not None
    job.state, job.started = "running", time.monotonic()
    before = queue.view(job)
    queue._progress(job, json.dumps({"event": "start", "graphs": job.kinds}))
    for kind in job.kinds[:3]:
        queue._progress(job, json.dumps({"event": "graph", "graph": kind, "seconds": 0.5}))
    after = queue.view(job)
    assert after["graphs_done"] == job.kinds[:3] and after["current"] == job.kinds[3]
    assert before["progress"] < after["progress"] < 1
    assert after["estimate_s"] < before["estimate_s"]
    queue._progress(job, "not json: a warning the exporter printed")  # ignored
    assert queue.view(job)["graphs_done"] == job.kinds[:3]


def test_queue_order_start_page_then_defaults_then_requests(tmp_path: Path) -> None:
    queue = ExportQueue(tmp_path / "models")  # never started: the order is what the worker would take
    queue.enqueue("resnet34", "init", SERVING_GRAPHS, USER)
    queue.enqueue_defaults("resnet20", ("resnet20", "resnet56", "resnet18"), lambda name: "init")
    again = queue.enqueue("resnet34", "init", ("grad-running",), USER)
    pending = queue.snapshot()["pending"]
    assert [p["key"] for p in pending] == ["resnet20@init", "resnet56@init", "resnet18@init", "resnet34@init"]
    assert pending[0]["priority"] == "start page" and pending[1]["priority"] == "default model"
    assert pending[0]["graphs"][:2] == list(ANALYSIS_GRAPHS)
    assert set(pending[0]["graphs"]) == set(SERVING_GRAPHS), "the start model's other graphs join its job"
    assert again is not None and again.key == "resnet34@init" and len(pending) == 4, "no second job for a model"
    assert [p["position"] for p in pending] == [0, 1, 2, 3]
    estimates = [p["estimate_s"] for p in pending]
    assert estimates == sorted(estimates), "a later export waits for the ones ahead"
    assert {START_PAGE, DEFAULTS, USER} == {j.priority for j in queue._queued.values()}


def test_on_demand_off_exports_nothing_and_names_the_command(fresh_client: Callable) -> None:
    client, fake = fresh_client(export_on_demand=False)
    r = client.get("/api/models/resnet34")
    assert r.status_code == 404
    assert "resviz export resnet34 --weights init" in r.json()["detail"]
    assert "RESVIZ_EXPORT_ON_DEMAND" in r.json()["detail"]
    r = client.post("/api/models/resnet20/analyze?image_id=" + "0" * 64)
    assert r.status_code in (400, 404)
    time.sleep(0.3)
    assert client.get("/api/exports").json()["pending"] == []
    assert fake.runs() == [] and client.app.state.exports.runs == 0


def test_start_up_queues_the_defaults_even_with_on_demand_off(tmp_path: Path) -> None:
    fake = Fake(tmp_path)
    settings = Settings(
        models_dir=tmp_path / "models",
        data_dir=tmp_path / "data",
        default_models=("resnet20", "resnet56"),
        export_on_demand=False,
    )
    with TestClient(create_app(settings, export_command=fake.command)) as client:
        r = client.get("/healthz")
        assert r.status_code == 200, "the server answers while the defaults export"
        keys = [p["key"] for p in client.get("/api/exports").json()["pending"]]
        assert keys == ["resnet20@trained", "resnet56@trained"]
        r = client.get("/api/models/resnet56")
        assert r.status_code == 503, "a queued default model is pending, not missing"
        assert client.get("/api/models/resnet34").status_code == 404
        fake.release()
        assert _wait(lambda: not client.get("/api/exports").json()["busy"])
    assert [line.split()[0] for line in fake.runs()] == ["resnet20@trained", "resnet56@trained"]


def test_time_limit_stops_an_export_and_says_so(fresh_client: Callable) -> None:
    client, fake = fresh_client(sleep=30, export_timeout_s=0.5)
    assert client.get("/api/models/resnet20?weights=init").status_code == 503
    assert _wait(lambda: not client.get("/api/exports").json()["busy"], timeout=20)
    recent = client.get("/api/exports").json()["recent"][0]
    assert recent["state"] == "failed" and "limit of 0.5 s" in recent["error"]
    r = client.get("/api/models/resnet20?weights=init")
    assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1, "a server-side failure, never a 500"
    assert "failed" in r.json()["detail"] and "resviz export resnet20" in r.json()["detail"]
    assert len(fake.runs()) == 1, "a failed export is not retried at once"


@pytest.mark.slow
def test_real_export_through_the_queue(tmp_path: Path) -> None:
    """The real subprocess (torch only there): 503 while it runs, then the model answers."""
    settings = Settings(models_dir=tmp_path / "models", data_dir=tmp_path / "data", export_on_start=False)
    with TestClient(create_app(settings)) as client:
        r = client.get("/api/models/resnet20?weights=init")
        assert r.status_code == 503 and "retry-after" in r.headers
        assert client.app.state.exports.wait_idle(600)
        recent = client.get("/api/exports").json()["recent"][0]
        assert recent["state"] == "done", recent
        assert recent["graphs_done"][:2] == ["running", "stats-running"]
        r = client.get("/api/models/resnet20?weights=init")
        assert r.status_code == 200 and r.json()["name"] == "resnet20"
        assert client.app.state.exports.runs == 1


def test_without_torch_nothing_is_exported_and_the_answer_names_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server installed without torch serves what is on disk and says how to make the rest (no 500, no export)."""
    monkeypatch.setattr("app.runtime.exports.torch_available", lambda: False)
    settings = Settings(models_dir=tmp_path / "models", data_dir=tmp_path / "data", default_models=("resnet20",))
    with TestClient(create_app(settings)) as client:  # export_on_start is on: nothing may be queued
        queue = client.app.state.exports
        assert not queue.can_export and client.get("/api/exports").json()["can_export"] is False
        r = client.get("/api/models/resnet20", params={"weights": "init"})
        assert r.status_code == 404
        detail = r.json()["detail"]
        assert "resviz export resnet20 --weights init" in detail and "torch is not installed" in detail
        r = client.post("/api/models/resnet56/gradients", params={"image": "shapes-32"})
        assert r.status_code in (400, 404) and r.status_code != 500
        assert client.get("/api/exports").json()["pending"] == [] and queue.runs == 0


def test_graphs_copied_in_without_their_state_dict_are_a_weights_choice(tmp_path: Path) -> None:
    from app.paths import available_variants

    (tmp_path / "resnet50" / "imagenet").mkdir(parents=True)
    (tmp_path / "resnet50" / "imagenet" / "manifest.json").write_text("{}")
    (tmp_path / "resnet50" / "init").mkdir(parents=True)
    (tmp_path / "resnet50" / "init" / "manifest.json").write_text("{}")
    assert available_variants(tmp_path, "resnet50") == ["imagenet", "init"]


def test_exports_of_one_models_folder_take_turns_across_processes(tmp_path: Path) -> None:
    """The folder lock (flock) keeps a second server process from exporting while another one does."""
    models = tmp_path / "models"
    fake = Fake(tmp_path)
    queue = ExportQueue(models, command=fake.command)
    with folder_lock(models, lambda: False):  # another process's export is running
        queue.start()
        queue.enqueue("resnet20", "init", ("running",))
        time.sleep(1.0)
        assert fake.runs() == [], "no export starts while another holds the folder"
    fake.release()
    assert _wait(lambda: len(fake.runs()) == 1) and queue.wait_idle(30)
    queue.stop()
