"""Batch norm's claims on the shipped networks: the BN and no-BN training logs, read once, and what they show.

``scripts/make_bn_claims.sh`` writes, beside the shipped weights, ``<model>-<variant>-nobn.log.json`` (the
network with every BN replaced by the identity, same data, seed and schedule) and
``<model>-<variant>-bn.log.json`` (the shipped BN run again with the same seed, for its per-layer gradient
norms; it records whether its loss curve equals the shipped log's). The loss curves and held-out
accuracies of the BN networks are the shipped logs' own.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path

import numpy as np

from app.paths import SHIPPED_WEIGHTS_DIR
from app.runtime.chartstats import moving_average

MODELS = ("resnet20", "resnet56")
VARIANTS = ("residual", "plain")
WINDOW = 25  # steps averaged for the "final" numbers and the drawn curves, as the lab's training curves
LOSS_TARGET = 1.0  # "steps to reach a training loss of 1.0" (smoothed curve)
CHANCE_LOSS = math.log(10)


def _num(x: object) -> float | None:
    """A finite float, else None."""
    try:
        v = float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def steps_to_loss(smooth: list[float | None], target: float = LOSS_TARGET) -> int | None:
    """The first step (0-based) whose smoothed training loss is at or below ``target``; None if never."""
    return next((i for i, v in enumerate(smooth) if v is not None and v <= target), None)


def _window_mean(values: list, window: int = WINDOW) -> float | None:
    """Mean of the last ``window`` finite values of a curve that ran to its end (None if none are finite)."""
    tail = [v for v in (_num(x) for x in values[-window:]) if v is not None]
    return float(np.mean(tail)) if tail else None


def _endpoints(layers: list[str]) -> tuple[str | None, str | None]:
    """The first block's first conv and the last block's last conv (the collapse table's two layers)."""
    blocks = [p for p in layers if p.startswith("layer")]
    return (blocks[0] if blocks else None), (blocks[-1] if blocks else None)


def grad_table(log: dict) -> dict | None:
    """The per-layer gradient norms a log recorded, with the first/last-layer ratio at each recorded step."""
    g = log.get("grad_norms")
    if not g:
        return None
    layers = list(g["layers"])
    first, last = _endpoints(layers)
    i, j = layers.index(first) if first else None, layers.index(last) if last else None
    records = g["records"]
    norms = [[_num(v) for v in r["norms"]] for r in records]
    ratios, firsts, lasts = [], [], []
    for row in norms:
        a, b = (row[i], row[j]) if i is not None and j is not None else (None, None)
        ratios.append(a / b if a is not None and b is not None and b > 0 else None)
        firsts.append(a)
        lasts.append(b)
    return {
        "layers": layers,
        "steps": [int(r["step"]) for r in records],
        "loss": [_num(r.get("loss")) for r in records],
        "norms": norms,
        "first_layer": first,
        "last_layer": last,
        "first_last_ratio": ratios,
        "first_norm": firsts,
        "last_norm": lasts,
        "what": g.get("what", "||dL/dW|| of each conv weight"),
    }


def run_row(log: dict, file: str, grads: dict | None = None, grads_file: str | None = None) -> dict:
    """One run as the lab draws it: curves, outcome, final and held-out numbers, gradient norms."""
    norm = log.get("norm", "batch")
    loss = [_num(v) for v in log["loss"]]
    acc = [_num(v) for v in log["accuracy"]]
    steps = int(log["steps"])
    attempts = log.get("attempts") or []
    last = attempts[-1] if attempts else {}
    outcome = last.get("outcome", "trained")
    complete = len(loss) == steps and all(v is not None for v in loss)
    smooth = moving_average(loss, WINDOW)
    train_acc = _window_mean(acc) if complete else None
    held = _num(log["held_out"].get("accuracy"))
    table = grad_table(grads if grads is not None else log)
    return {
        "model": log["model"],
        "depth": int(log["model"].removeprefix("resnet")),
        "plain": bool(log["plain"]),
        "norm": norm,
        "file": file,
        "grad_norms_file": grads_file or (file if table else None),
        "steps": steps,
        "steps_run": len(loss),
        "outcome": outcome,
        "diverged_at_step": last.get("diverged_at_step"),
        "peak_lr": log["lr_schedule"]["peak_lr"],
        "retried": bool(log.get("retried", False)),
        "retry_reason": log.get("retry_reason"),
        "attempts": [
            {**a, "loss_smooth": moving_average([_num(v) for v in a.get("loss", [])], WINDOW)} for a in attempts
        ],
        "loss": loss,
        "loss_smooth": smooth,
        "accuracy_smooth": moving_average(acc, WINDOW),
        "final_train_loss": _window_mean(loss) if complete else None,
        "final_train_accuracy": train_acc,
        "held_out_accuracy": held,
        "generalisation_gap": train_acc - held if train_acc is not None and held is not None else None,
        "steps_to_loss_1": steps_to_loss(smooth),
        "initial_loss": loss[0] if loss else None,
        "wall_time_s": _num(log.get("wall_time_s")),
        "command": log.get("command"),
        "grad_norms": table,
        "reproduces": (grads or {}).get("reproduces"),
    }


HUGE, TINY, LOPSIDED = 100.0, 0.02, 100.0  # ||dL/dW|| above HUGE: exploding; all below TINY: vanishing


def gradient_state(first: float | None, last: float | None) -> str | None:
    """A word for the first and last block convs' gradient norms: exploding, vanishing, lopsided or healthy."""
    if first is None or last is None:
        return None
    if max(first, last) > HUGE:
        return "exploding"
    if max(first, last) < TINY:
        return "vanishing"
    if min(first, last) > 0 and max(first / last, last / first) > LOPSIDED:
        return "lopsided"
    return "healthy"


def _pair(bn: dict | None, nobn: dict | None) -> dict:
    """BN against no-BN for one network: the numbers a caption compares."""

    def pick(row: dict | None, key: str) -> object:
        return None if row is None else row.get(key)

    def ratio_at(row: dict | None, where: int) -> float | None:
        g = None if row is None else row["grad_norms"]
        return g["first_last_ratio"][where] if g and g["first_last_ratio"] else None

    def norm_at(row: dict | None, key: str, where: int) -> float | None:
        g = None if row is None else row["grad_norms"]
        return g[key][where] if g and g[key] else None

    def step_at(row: dict | None, where: int) -> int | None:
        g = None if row is None else row["grad_norms"]
        return g["steps"][where] if g and g["steps"] else None

    keys = ("steps_to_loss_1", "final_train_loss", "held_out_accuracy", "generalisation_gap", "outcome")
    out = {k: {"bn": pick(bn, k), "nobn": pick(nobn, k)} for k in keys}
    out["ratio_step0"] = {"bn": ratio_at(bn, 0), "nobn": ratio_at(nobn, 0)}
    out["ratio_end"] = {"bn": ratio_at(bn, -1), "nobn": ratio_at(nobn, -1)}
    out["ratio_end_step"] = {"bn": step_at(bn, -1), "nobn": step_at(nobn, -1)}
    for key in ("first_norm", "last_norm"):  # the magnitudes behind the ratio: all small (vanishing) or all huge
        out[f"{key}_step0"] = {"bn": norm_at(bn, key, 0), "nobn": norm_at(nobn, key, 0)}
    out["gradient_step0"] = {
        k: gradient_state(out["first_norm_step0"][k], out["last_norm_step0"][k]) for k in ("bn", "nobn")
    }
    return out


def _fmt(v: float | None, spec: str = ".3f") -> str:
    return "n/a" if v is None else format(v, spec)


def _verdict(s: dict, nobn: dict) -> str:
    """What one pair shows, in words: does the no-BN network train, and how do the gradients start."""
    bn_loss, loss = s["final_train_loss"]["bn"], s["final_train_loss"]["nobn"]
    if nobn["outcome"] == "diverged":
        out = "Without BN it does not train at all (it diverges)."
    elif nobn["outcome"] == "stuck":
        out = "Without BN it does not train at all (it stays at chance)."
    elif loss is not None and bn_loss is not None and loss > 1.0 > bn_loss:
        out = "Without BN it learns far more slowly on the same schedule."
    else:
        out = "Without BN it trains too."
    g = s["gradient_step0"]
    words = {
        "exploding": "exploding (above 100)",
        "vanishing": "vanishing (all below 0.02)",
        "lopsided": "lopsided (first and last differ by over 100x)",
        "healthy": "healthy",
    }
    if g["bn"] or g["nobn"]:
        out += (
            f" Gradients at step 0: {words.get(g['bn'], 'not recorded')} with BN, "
            f"{words.get(g['nobn'], 'not recorded')} without."
        )
    return out


def findings(pairs: list[dict]) -> list[str]:
    """Plain-language findings computed from the runs: what each claim looks like on this data."""
    out = []
    for p in pairs:
        label = f"{'plain' if p['plain'] else 'ResNet'}-{p['depth']}"
        s = p["summary"]
        nobn = p.get("nobn")
        if nobn is None:
            out.append(f"{label}: no run without BN shipped.")
            continue
        if nobn["outcome"] == "diverged":
            what = f"without BN diverged at step {nobn['diverged_at_step']} (peak lr {nobn['peak_lr']})"
            if nobn["retried"]:
                first = nobn["attempts"][0]
                how = (
                    f"also diverged (at step {first['diverged_at_step']})"
                    if first["outcome"] == "diverged"
                    else f"was {first['outcome']}"
                )
                what += f", after a first attempt at peak lr {first['peak_lr']} that {how}"
            what += f"; its first loss was {_fmt(nobn['initial_loss'], '.4g')}"
        else:
            what = (
                f"without BN ends at training loss {_fmt(s['final_train_loss']['nobn'])} "
                f"(held-out {_fmt(s['held_out_accuracy']['nobn'], '.1%')}, peak lr {nobn['peak_lr']}"
                + (", retried" if nobn["retried"] else "")
                + ")"
            )
        with_bn = f"with BN {_fmt(s['final_train_loss']['bn'])} (held-out {_fmt(s['held_out_accuracy']['bn'], '.1%')})"
        reach = s["steps_to_loss_1"]

        def at(step: int | None) -> str:
            return f"at step {step}" if step is not None else "never"

        speed = f"Smoothed loss 1.0: {at(reach['bn'])} with BN, {at(reach['nobn'])} without"
        r0, r1 = s["ratio_step0"], s["ratio_end"]
        f0, l0 = s["first_norm_step0"], s["last_norm_step0"]
        grads = (
            f"at step 0 ||dL/dW|| of the first and last block convs is {_fmt(f0['bn'], '.3g')} and "
            f"{_fmt(l0['bn'], '.3g')} with BN (ratio {_fmt(r0['bn'], '.3g')}), {_fmt(f0['nobn'], '.3g')} and "
            f"{_fmt(l0['nobn'], '.3g')} without (ratio {_fmt(r0['nobn'], '.3g')}); at the last recorded step the "
            f"ratio is {_fmt(r1['bn'], '.3g')} with BN, {_fmt(r1['nobn'], '.3g')} without"
        )
        out.append(f"{label}: {with_bn}; {what}. {speed}; {grads}. {_verdict(s, nobn)}")
    reach = [(p, p["summary"]["steps_to_loss_1"]) for p in pairs if p.get("bn") and p.get("nobn")]
    if reach:
        with_bn = sum(r["bn"] is not None for _, r in reach)
        without = sum(r["nobn"] is not None for _, r in reach)
        out.append(
            f"Smoothed training loss 1.0 within {reach[0][0]['bn']['steps']} steps: "
            f"{with_bn} of {len(reach)} networks with BN, {without} of {len(reach)} without."
        )
    gaps = [
        (p, p["summary"]["generalisation_gap"])
        for p in pairs
        if None not in (p["summary"]["generalisation_gap"]["bn"], p["summary"]["generalisation_gap"]["nobn"])
    ]
    if gaps:
        text = "; ".join(
            f"{'plain' if p['plain'] else 'ResNet'}-{p['depth']} {g['bn']:+.1%} with BN, {g['nobn']:+.1%} without"
            for p, g in gaps
        )
        out.append(
            "Train-minus-held-out accuracy (last 25 steps against the 1,000 held-out images): "
            + text
            + ". Every training batch is freshly generated, so no image is seen twice and there is little to "
            "overfit: a regularising effect of BN cannot show as a smaller gap on this data."
        )
    return out


@lru_cache(maxsize=4)
def _read(path: str, mtime_ns: int) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def _load(path: Path) -> dict | None:
    """A log's content, read once per file version (None if missing or unreadable)."""
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        return None
    return _read(str(path), mtime)


def _stems() -> list[str]:
    return [f"{m}-{v}" for m in MODELS for v in VARIANTS]


def bn_claims(weights_dir: Path = SHIPPED_WEIGHTS_DIR) -> dict:
    """Every BN / no-BN pair of ResNet-20/56, residual and plain, from the shipped logs (cached per file versions)."""
    versions = []
    for stem in _stems():
        for tag in ("", "-bn", "-nobn"):
            try:
                versions.append((stem + tag, (weights_dir / f"{stem}{tag}.log.json").stat().st_mtime_ns))
            except OSError:
                versions.append((stem + tag, None))
    return _claims(str(weights_dir), tuple(versions))


@lru_cache(maxsize=2)
def _claims(weights_dir_text: str, versions: tuple) -> dict:
    """``bn_claims`` for one set of file versions."""
    weights_dir = Path(weights_dir_text)
    runs, pairs = [], []
    for model in MODELS:
        for variant in VARIANTS:
            stem = f"{model}-{variant}"
            shipped, rerun, nobn_log = (_load(weights_dir / f"{stem}{t}.log.json") for t in ("", "-bn", "-nobn"))
            bn = (
                run_row(shipped, f"{stem}.log.json", rerun, f"{stem}-bn.log.json" if rerun else None)
                if shipped
                else None
            )
            nobn = run_row(nobn_log, f"{stem}-nobn.log.json") if nobn_log else None
            runs += [r for r in (bn, nobn) if r is not None]
            if bn is None and nobn is None:
                continue
            pairs.append(
                {
                    "model": model,
                    "depth": int(model.removeprefix("resnet")),
                    "plain": variant == "plain",
                    "bn": bn,
                    "nobn": nobn,
                    "summary": _pair(bn, nobn),
                }
            )
    return {
        "runs": runs,
        "pairs": [{k: v for k, v in p.items() if k not in ("bn", "nobn")} for p in pairs],
        "findings": findings(pairs),
        "loss_target": LOSS_TARGET,
        "chance_loss": CHANCE_LOSS,
        "window": WINDOW,
        "command": "scripts/make_bn_claims.sh",
    }
