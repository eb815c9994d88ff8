"""The app on Ray Serve: ``resviz serve --engine ray --replicas 2`` on 127.0.0.1, and the serve config files.

The cluster test starts a new local Ray (bound to 127.0.0.1, no dashboard, no usage reporting) through the
CLI, uploads 20 images, checks that both replicas answered and that images uploaded through one replica are
analysed through the other (the shared image store), an embed round trip and bad requests (4xx), then stops
the server with SIGTERM, which shuts Ray down. Skipped only where the cluster extra (ray[serve]) is missing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest

from app.paths import REPO, SERVING_GRAPHS
from tests.conftest import png_bytes
from tests.deploy.smoke import free_port, request, upload, wait_ready

serve = pytest.importorskip("ray.serve", reason="the cluster extra is not installed: pip install -e '.[cluster]'")
yaml = pytest.importorskip("yaml", reason="pyyaml (the dev extra) reads the serve config files")

REPLICA = "x-resviz-replica"
START_TIMEOUT_S = 180
STOP_TIMEOUT_S = 60


@pytest.fixture
def ray_server(exported: Callable, models_dir: Path, tmp_path: Path) -> Iterator[str]:
    """``resviz serve --engine ray --replicas 2`` on a free loopback port, stopped (and Ray with it) at the end."""
    exported("resnet20", "init", SERVING_GRAPHS)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RESVIZ_", "RAY_"))}
    env |= {
        "RESVIZ_DATA_DIR": str(tmp_path / "data"),  # one image store for both replicas
        "RESVIZ_EXPORT_ON_START": "false",
        "RESVIZ_EXPORT_ON_DEMAND": "false",  # the replicas serve this session's exports and export nothing
        "RESVIZ_UPLOAD_BURST": "100",  # the limiter is per replica and per address: 20 uploads from one client
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    cmd = [sys.executable, "-m", "app.cli", "--models-dir", str(models_dir), "serve", "--engine", "ray"]
    cmd += ["--replicas", "2", "--replica-cpus", "1", "--host", "127.0.0.1", "--port", str(port)]
    log = (tmp_path / "ray-serve.log").open("w+")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc, START_TIMEOUT_S)
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the group this test started: the server and its Ray
            rc = proc.wait(10)
        log.seek(0)
        text = log.read()
        log.close()
        assert rc == 0, text[-3000:]


@pytest.mark.ray
def test_two_replicas_share_the_store_and_answer_in_turn(ray_server: str) -> None:
    base = ray_server
    seen: set[str] = set()  # the HTTP proxy answers once one replica is up: wait (bounded) for the second one
    deadline = time.monotonic() + START_TIMEOUT_S
    while len(seen) < 2 and time.monotonic() < deadline:
        seen.add(request(f"{base}/healthz").headers[REPLICA])
        time.sleep(0.05)
    uploaded: dict[str, str] = {}  # image id -> the replica that stored it
    for i in range(20):
        r = upload(base, png_bytes((40 + i, 36), seed=100 + i))
        assert r.status == 201, r.body[:300]
        uploaded[r.json()["id"]] = r.headers[REPLICA]
    assert len(set(uploaded.values())) == 2, f"both replicas answered: {set(uploaded.values())}"

    elsewhere = 0
    for image_id, stored_by in uploaded.items():
        q = urlencode({"image_id": image_id, "weights": "init", "sections": "summary"})
        r = request(f"{base}/api/models/resnet20/analyze?{q}", "POST")
        assert r.status == 200, r.body[:300]
        assert len(r.json()["prediction"]) == 1
        elsewhere += r.headers[REPLICA] != stored_by
    assert elsewhere > 0, "an image stored through one replica was analysed through the other"

    image_id = next(iter(uploaded))
    page = request(f"{base}/embed/activations?{urlencode({'model': 'resnet20', 'weights': 'init', 'image': image_id})}")
    assert page.status == 200 and REPLICA in page.headers
    at = page.body.find(b'id="embed-config"')
    cfg = json.loads(page.body[page.body.find(b">", at) + 1 : page.body.find(b"</script>", at)])
    assert cfg["image_id"] == image_id and cfg["model"] == "resnet20"
    q = urlencode(
        {"image_id": cfg["image_id"], "weights": cfg["weights"] or "init", "gates": cfg["gates"], "bn": cfg["bn"]}
    )
    r = request(f"{base}/api/models/{cfg['model']}/analyze?{q}", "POST")
    assert r.status == 200 and len(r.json()["layers"]) == 50, "the embed's analysis"

    q = urlencode({"image_id": image_id, "weights": "init", "gates": "bogus"})
    bad = request(f"{base}/api/models/resnet20/analyze?{q}", "POST")
    assert bad.status == 400 and "gates" in bad.json()["detail"], bad.body[:300]
    assert request(f"{base}/api/models/vgg19").status == 404
    not_image = upload(base, b"not an image at all")
    assert 400 <= not_image.status < 500, not_image.body[:300]
    ready = request(f"{base}/readyz").json()
    assert ready["gate"]["slots"] == 1, "one graph slot per replica CPU"


def test_serve_config_and_the_rayservice_hold_the_same_applications() -> None:
    config = yaml.safe_load((REPO / "serve_config.yaml").read_text())
    service = yaml.safe_load((REPO / "deploy" / "k8s" / "rayservice.yaml").read_text())
    embedded = yaml.safe_load(service["spec"]["serveConfigV2"])
    assert embedded["applications"] == config["applications"]
    [application] = config["applications"]
    assert application["import_path"] == "app.cluster:build_app" and "deployments" not in application

    from ray.serve.schema import ServeDeploySchema

    ServeDeploySchema.model_validate(config)  # what `serve deploy` and KubeRay check


def test_deployment_matches_the_admission_gate() -> None:
    from app.cluster import build_app

    [application] = yaml.safe_load((REPO / "serve_config.yaml").read_text())["applications"]
    args = application["args"]
    deployment = build_app(args)._bound_deployment
    queue = 128  # the settings' default queue_length
    slots = args["replica_cpus"]  # one graph slot per CPU
    assert deployment.max_ongoing_requests == slots + queue and deployment.max_queued_requests == queue
    assert deployment.ray_actor_options["num_cpus"] == args["replica_cpus"]
    back = deployment.backpressure_config
    assert back.status_code == 503 and back.retry_after_s >= 1, "Ray's own queue full: 503 with Retry-After"
    auto = deployment._deployment_config.autoscaling_config
    assert auto.min_replicas == args["replicas"] and auto.max_replicas == args["max_replicas"]
    assert auto.target_ongoing_requests == slots
    [settings] = deployment.init_args
    assert settings["cpus"] == args["replica_cpus"]
    fixed = build_app({"replicas": 3, "replica_cpus": 1})._bound_deployment
    assert fixed.num_replicas == 3 and fixed._deployment_config.autoscaling_config is None
    with pytest.raises(ValueError, match="max_replicas"):
        build_app({"replicas": 3, "max_replicas": 2})


def test_serve_ray_refuses_more_cpus_than_the_machine_has(monkeypatch: pytest.MonkeyPatch) -> None:
    from app import cli

    monkeypatch.setattr("app.config.cpu_count", lambda: 2)
    monkeypatch.setattr("app.cluster.cpu_count", lambda: 2)
    started = time.monotonic()
    rc = cli.main(["serve", "--engine", "ray", "--replicas", "4", "--replica-cpus", "1", "--port", "1"])
    assert rc == 2 and time.monotonic() - started < 30, "refused before any Ray starts"
