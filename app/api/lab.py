"""Degradation lab: training curves of plain and residual CIFAR nets, and the paper's Fig. 7."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, JSONResponse, Response

from app.api.deps import GateDep, RegistryDep, payload_response
from app.api.pages import TEMPLATES
from app.api.schemas.common import documented
from app.api.schemas.normalization import BNClaims
from app.api.schemas.responses import Fig7, LabTraining, LandscapeList, LandscapePair
from app.api.schemas.shattered import ShatteredLab
from app.paths import SAMPLES_DIR, SHIPPED_WEIGHTS_DIR
from app.runtime import landscapes
from app.runtime import shattered as shatter
from app.runtime.admission import Job
from app.runtime.analysis import measure
from app.runtime.chartstats import finite_mean, moving_average
from app.runtime.preprocess import prepare
from app.runtime.registry import ModelRegistry, parse_bn
from app.runtime.service import Payload, RequestError

router = APIRouter(tags=["lab"])
SAMPLES = SAMPLES_DIR
WINDOW = 25  # steps averaged for "final training loss", as in the training logs


def training_logs(weights_dir: Path = SHIPPED_WEIGHTS_DIR) -> list[dict]:
    """Every shipped training log: curves and the summary numbers, shallow models first."""
    rows = []
    for path in sorted(weights_dir.glob("*.log.json")):
        log = json.loads(path.read_text())
        if path.name != f"{log['model']}-{'plain' if log['plain'] else 'residual'}.log.json":
            continue  # a tagged log (-nobn, -bn: the batch-norm runs) is not a shipped network's
        rows.append(
            {
                "model": log["model"],
                "depth": int(log["model"].removeprefix("resnet")),
                "plain": bool(log["plain"]),
                "steps": log["steps"],
                "batch_size": log["batch_size"],
                "loss": log["loss"],
                "accuracy": log["accuracy"],
                # the curves drawn: a moving average over the last WINDOW steps
                "loss_smooth": moving_average(log["loss"], WINDOW),
                "accuracy_smooth": moving_average(log["accuracy"], WINDOW),
                "final_train_loss": float(np.mean(log["loss"][-WINDOW:])),
                "final_train_accuracy": float(np.mean(log["accuracy"][-WINDOW:])),
                "held_out_accuracy": log["held_out"]["accuracy"],
                "wall_time_s": log["wall_time_s"],
                "lr_schedule": log["lr_schedule"],
                "seed": log["seed"],
            }
        )
    rows.sort(key=lambda r: (r["depth"], r["plain"]))
    return rows


def degradation_verdict(rows: list[dict]) -> list[str]:
    """Plain-language findings computed from the logs (what the numbers show, nothing more)."""
    by = {(r["depth"], r["plain"]): r for r in rows}
    depths = sorted({r["depth"] for r in rows})
    out = []
    if len(depths) >= 2 and all((d, True) in by for d in depths):
        shallow, deep = by[(depths[0], True)], by[(depths[-1], True)]
        worse = deep["final_train_loss"] > shallow["final_train_loss"]
        out.append(
            f"Plain-{deep['depth']} ends with training loss {deep['final_train_loss']:.3f} against "
            f"{shallow['final_train_loss']:.3f} for plain-{shallow['depth']} after the same {deep['steps']} steps: "
            + (
                "the deeper plain network trains worse, on the training set itself (degradation)."
                if worse
                else "on this data the deeper plain network does not train worse."
            )
        )
    for d in depths:
        if (d, True) in by and (d, False) in by:
            p, r = by[(d, True)], by[(d, False)]
            out.append(
                f"{d} layers: residual {r['final_train_loss']:.3f} (held-out accuracy {r['held_out_accuracy']:.1%}) "
                f"against plain {p['final_train_loss']:.3f} ({p['held_out_accuracy']:.1%})."
            )
    return out


def _probe_batch() -> list[bytes]:
    return [p.read_bytes() for p in sorted(SAMPLES.glob("set-*.png"))]


def fig7(registry: ModelRegistry, bn: str, names: tuple[str, ...] = ("resnet20", "resnet56", "resnet110")) -> dict:
    """Std of every 3x3 layer's response (after BN, before ReLU) for the shipped plain and residual nets."""
    blobs = _probe_batch()
    if not blobs:
        raise RequestError("no probe images (static/samples/set-*.png); run scripts/make_samples.py")
    series = []
    for name in names:
        for variant, plain in (("trained", False), ("plain", True)):
            if variant not in registry.variants(name):
                continue
            model = registry.get(name, variant)
            kernels = {layer["id"]: layer["kernel"] for layer in model.manifest["layers"]}
            bn_ids = [b["id"] for b in model.manifest["batchnorm"] if kernels.get(b["input"]) == 3]
            gates = np.full(model.num_blocks, 0.0 if plain else 1.0, np.float32)
            x = np.stack([prepare(b, model.manifest["preprocessing"])[0] for b in blobs])
            reports = measure(registry, model, x, gates, bn).reports
            std = [reports[i]["stats"]["std"] for i in bn_ids]
            finite = [v for v in std if np.isfinite(v)]
            series.append(
                {
                    "model": name,
                    "depth": model.manifest["depth"],
                    "plain": plain,
                    "weights": variant,
                    "layers": bn_ids,
                    "std": std,
                    "std_sorted": sorted(finite, reverse=True),  # the right-hand panel: layers by std
                    "std_mean": finite_mean(std),
                }
            )
    return {"bn": bn, "images": len(blobs), "series": series}


@router.get("/api/lab/training", **documented(LabTraining))
def lab_training() -> dict:
    """Training curves and summary numbers of the shipped plain and residual CIFAR models."""
    rows = training_logs()
    return {"runs": rows, "findings": degradation_verdict(rows)}


@router.get("/api/lab/bn-claims", **documented(BNClaims))
def lab_bn_claims() -> dict:
    """Batch norm's claims measured: ResNet-20/56, residual and plain, trained with and without BN.

    Loss curves, held-out accuracies, every conv layer's gradient norm at the recorded steps, and the
    summary numbers the captions quote (steps to a smoothed loss of 1.0, first/last-layer gradient ratios,
    train-minus-held-out accuracy), all from the shipped logs (``scripts/make_bn_claims.sh``).
    """
    from app.runtime.bnclaims import bn_claims

    return bn_claims()


@router.get("/api/lab/fig7", **documented(Fig7, errors=(400, 404, 503)))
async def lab_fig7(
    request: Request,
    registry: RegistryDep,
    gate: GateDep,
    bn: Annotated[str, Query(description="Batch norm statistics: `running` or `batch`.")] = "running",
) -> Response:
    """The paper's Fig. 7 for the shipped models: response std of each 3x3 layer."""
    try:
        mode = parse_bn(bn)
    except ValueError as exc:
        raise RequestError(str(exc)) from None
    job = Job(("fig7", mode), lambda: Payload.of(fig7(registry, mode)), cost="fig7")
    return payload_response(request, await gate.submit(job, request.is_disconnected))


@router.get("/api/lab/shattered", **documented(ShatteredLab, errors=(404,)))
def lab_shattered(request: Request) -> Response:
    """Shattered gradients (Balduzzi et al. 2017) of the shipped CIFAR nets, residual and plain, init and trained.

    Read from models/weights/shattered.json (made by scripts/shattered.py), with the summary rows the
    captions show (spectrum slopes and lag-1 autocorrelations per depth) and notes where it is stale.
    """
    doc = shatter.lab_study()
    if doc is None:
        raise KeyError(
            f"no shipped shattered-gradients study ({shatter.SHIPPED_PATH.name}); run python scripts/shattered.py"
        )
    return payload_response(request, Payload.of(doc))


@router.get("/api/lab/landscapes", **documented(LandscapeList))
def lab_landscapes() -> dict:
    """Every shipped loss landscape (Li et al. 2018) with its numbers: rises, local minima, eigenvalue ratio."""
    return landscapes.catalogue()


@router.get("/api/lab/landscapes/{model}", **documented(LandscapePair, errors=(404,)))
def lab_landscape(
    model: Annotated[
        str,
        PathParam(
            description="A CIFAR model with shipped loss landscapes (`GET /api/lab/landscapes`).", examples=["resnet56"]
        ),
    ],
) -> dict | JSONResponse:
    """The residual and plain loss surfaces of one depth (grids, 1-D slices, one colour scale, comparisons)."""
    try:
        return landscapes.pair(model)
    except landscapes.UnknownLandscape as exc:
        return JSONResponse({"detail": str(exc), "known": exc.known}, status_code=404)


@router.get("/lab", response_class=HTMLResponse, include_in_schema=False)
def lab_page(request: Request) -> HTMLResponse:
    """The degradation lab page."""
    return TEMPLATES.TemplateResponse(request, "lab.html", {})
