"""The command line prints the same JSON as the HTTP API, and fails clearly on bad input."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from app.cli import main
from tests.conftest import png_bytes


def _drop_timings(d: dict) -> dict:
    d.pop("timings_ms", None)
    return d


def test_analyze_cli_matches_api(
    tmp_path: Path, exported: Callable, models_dir: Path, make_client: Callable, capsys: pytest.CaptureFixture
) -> None:
    exported("resnet20", kinds=("running", "batch", "stats-running", "stats-batch", "grad-running"))
    img = tmp_path / "a.png"
    img.write_bytes(png_bytes(seed=11))
    args = [
        "--models-dir",
        str(models_dir),
        "analyze",
        str(img),
        "--model",
        "resnet20",
        "--weights",
        "init",
        "--gates",
        "all-off",
        "--bn",
        "batch",
        "--json",
    ]
    assert main(args) == 0
    cli = json.loads(capsys.readouterr().out)
    client = make_client()
    api = client.post(
        "/api/models/resnet20/analyze",
        files={"image": ("a.png", img.read_bytes(), "image/png")},
        params={"weights": "init", "gates": "all-off", "bn": "batch"},
    ).json()
    assert _drop_timings(cli) == _drop_timings(api)
    assert (
        main(
            [
                "--models-dir",
                str(models_dir),
                "gradients",
                str(img),
                "--model",
                "resnet20",
                "--weights",
                "init",
                "--json",
            ]
        )
        == 0
    )
    grads = json.loads(capsys.readouterr().out)
    api_grads = client.post(
        "/api/models/resnet20/gradients",
        params={"weights": "init"},
        files={"image": ("a.png", img.read_bytes(), "image/png")},
    ).json()
    assert grads == api_grads


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--gates", "1,2"], "gates has 2 values"),
        (["--bn", "x"], "bn must be one of"),
        (["--model", "resnet9"], "unknown model 'resnet9'"),
    ],
)
def test_cli_bad_input(
    tmp_path: Path, exported: Callable, models_dir: Path, capsys: pytest.CaptureFixture, extra: list[str], message: str
) -> None:
    exported("resnet20")
    img = tmp_path / "a.png"
    img.write_bytes(png_bytes())
    args = ["--models-dir", str(models_dir), "analyze", str(img), "--weights", "init"]
    args += extra if "--model" in extra else ["--model", "resnet20", *extra]
    assert main(args) == 2
    assert message in capsys.readouterr().err
    (tmp_path / "t.txt").write_text("not an image")
    assert (
        main(
            [
                "--models-dir",
                str(models_dir),
                "analyze",
                str(tmp_path / "t.txt"),
                "--model",
                "resnet20",
                "--weights",
                "init",
            ]
        )
        == 2
    )
    assert "not an image" in capsys.readouterr().err
