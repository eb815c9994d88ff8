"""Weights: import round trip, clear errors for bad files, fetch from a local URL."""

from __future__ import annotations

import hashlib
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from app.cli import main as cli_main
from app.nets.resnet import build
from app.nets.weights import TORCHVISION_FILES, WeightsError, fetch_weights, import_weights, read_state_dict
from app.paths import user_weights


def test_import_round_trip(tmp_path: Path) -> None:
    model = build("resnet20", seed=3)
    torch.save(model.state_dict(), tmp_path / "w.pt")
    dest = import_weights(tmp_path / "w.pt", "resnet20", tmp_path / "models", "mine")
    assert dest == user_weights(tmp_path / "models", "resnet20", "mine")
    back = read_state_dict(dest)
    for k, v in model.state_dict().items():
        assert torch.equal(back[k].to(v.dtype), v), k


class _Evil:
    def __reduce__(self):  # noqa: ANN204
        return (os.system, (f"touch {_Evil.marker}",))


def test_pickle_that_runs_code_is_refused(tmp_path: Path) -> None:
    _Evil.marker = str(tmp_path / "pwned")
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"conv1.weight": _Evil()}, f)
    with pytest.raises(WeightsError, match="could run code|Python objects"):
        import_weights(path, "resnet20", tmp_path / "models")
    assert not (tmp_path / "pwned").exists()
    assert not (tmp_path / "models").exists()


def test_wrong_keys_and_shapes(tmp_path: Path) -> None:
    sd = build("resnet20").state_dict()
    missing = dict(sd)
    del missing["layer2.0.conv1.weight"]
    torch.save(missing, tmp_path / "missing.pt")
    with pytest.raises(WeightsError, match="missing key 'layer2.0.conv1.weight'"):
        import_weights(tmp_path / "missing.pt", "resnet20", tmp_path / "m")
    extra = dict(sd, **{"layer9.weight": torch.zeros(1)})
    torch.save(extra, tmp_path / "extra.pt")
    with pytest.raises(WeightsError, match="unexpected key 'layer9.weight'"):
        import_weights(tmp_path / "extra.pt", "resnet20", tmp_path / "m")
    shaped = dict(sd, **{"fc.weight": torch.zeros(5, 64)})
    torch.save(shaped, tmp_path / "shape.pt")
    with pytest.raises(WeightsError, match=r"'fc.weight' has shape \(5, 64\), expected \(10, 64\)"):
        import_weights(tmp_path / "shape.pt", "resnet20", tmp_path / "m")
    # weights of another model of the family do not fit
    torch.save(build("resnet32").state_dict(), tmp_path / "r32.pt")
    with pytest.raises(WeightsError, match="unexpected key"):
        import_weights(tmp_path / "r32.pt", "resnet20", tmp_path / "m")
    assert not (tmp_path / "m" / "imported").exists() or not any((tmp_path / "m" / "imported").iterdir())


def test_truncated_and_directory(tmp_path: Path) -> None:
    torch.save(build("resnet20").state_dict(), tmp_path / "w.pt")
    data = (tmp_path / "w.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="truncated or corrupt"):
        import_weights(tmp_path / "cut.pt", "resnet20", tmp_path / "m")
    with pytest.raises(WeightsError, match="is a directory"):
        import_weights(tmp_path, "resnet20", tmp_path / "m")
    with pytest.raises(WeightsError, match="does not exist"):
        import_weights(tmp_path / "nope.pt", "resnet20", tmp_path / "m")
    (tmp_path / "list.pt").write_bytes(b"")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(WeightsError, match="expected a dict of tensors"):
        import_weights(tmp_path / "list.pt", "resnet20", tmp_path / "m")


def test_cli_import_errors_exit_nonzero(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli_main(["--models-dir", str(tmp_path), "weights", "import", str(tmp_path), "--model", "resnet20"]) == 2
    assert "is a directory" in capsys.readouterr().err
    assert cli_main(["--models-dir", str(tmp_path), "weights", "import", "x.pt", "--model", "resnet9"]) == 2
    assert "unknown model 'resnet9'" in capsys.readouterr().err


def _publish(tmp_path: Path, name: str, good: bool = True) -> str:
    """Write a state dict under torchvision's file name in a local folder; return its file:// URL."""
    folder = tmp_path / "published"
    folder.mkdir(exist_ok=True)
    raw = tmp_path / "raw.pt"
    torch.save(build(name, seed=5).state_dict(), raw)
    digest = hashlib.sha256(raw.read_bytes()).hexdigest()
    fake_name = TORCHVISION_FILES[name]
    TORCHVISION_FILES[name] = f"{name}-{digest[:8] if good else 'deadbeef'}.pth"
    (folder / TORCHVISION_FILES[name]).write_bytes(raw.read_bytes())
    return fake_name


def test_fetch_from_local_url_checks_hash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(TORCHVISION_FILES, "resnet18", TORCHVISION_FILES["resnet18"])
    _publish(tmp_path, "resnet18")
    dest = fetch_weights("resnet18", tmp_path / "m", base_url=(tmp_path / "published").as_uri())
    assert dest.exists() and dest.name == "resnet18@imagenet.pt"
    monkeypatch.setitem(TORCHVISION_FILES, "resnet18", TORCHVISION_FILES["resnet18"])
    _publish(tmp_path, "resnet18", good=False)
    with pytest.raises(WeightsError, match="hash mismatch"):
        fetch_weights("resnet18", tmp_path / "m2", base_url=(tmp_path / "published").as_uri())
    assert not any((tmp_path / "m2" / "imported").iterdir())


def test_fetch_without_network_fails_fast(tmp_path: Path) -> None:
    # A closed local port stands in for "no network": the error must be immediate and readable.
    with pytest.raises(WeightsError, match="No network"):
        fetch_weights("resnet18", tmp_path / "m", base_url="http://127.0.0.1:9/models/", timeout=5)
    with pytest.raises(WeightsError, match="no published ImageNet weights"):
        fetch_weights("resnet20", tmp_path / "m")


def test_server_does_not_import_torch() -> None:
    code = (
        "import sys, app.main, app.runtime.analysis, app.cli; app.main.create_app(); "
        "assert 'torch' not in sys.modules, 'torch imported'; print('ok')"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2]
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
