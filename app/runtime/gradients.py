"""Gradient norms, lesion study and depth sweep, all computed by ONNX graphs (no autograd here)."""

from __future__ import annotations

import numpy as np

from app.runtime.analysis import softmax
from app.runtime.labels import class_names
from app.runtime.registry import LoadedModel, ModelRegistry
from app.runtime.stats import nonfinite_note

GRAD_WHY = "the gradient overflowed float32 on its way back through the network (it exploded)"

SWEEP_DEPTHS = (20, 32, 44, 56, 110)


def check_target(target: int | None, num_classes: int) -> None:
    """Raise ValueError unless ``target`` is None or a class index of the model."""
    if target is not None and not 0 <= target < num_classes:
        raise ValueError(f"target must be a class index in [0, {num_classes - 1}], got {target}")


def finish_norms(outputs: dict[str, np.ndarray]) -> dict[str, float]:
    """L2 norms from a gradient graph's ``grad_*`` outputs (squared norms in parts), summed in float64."""
    names = [k for k in outputs if k.startswith("grad_")]
    parts = [np.ravel(outputs[k]) for k in names]
    starts = np.cumsum([0] + [p.size for p in parts[:-1]])
    totals = np.add.reduceat(np.concatenate(parts).astype(np.float64), starts) if names else np.zeros(0)
    # Gram-matrix parts may be negative and their total round to just below 0: clip before the root.
    return dict(zip(names, np.sqrt(np.maximum(totals, 0.0)).tolist(), strict=True))


def gradients(
    registry: ModelRegistry, model: LoadedModel, images: np.ndarray, gates: np.ndarray, bn: str, target: int | None
) -> dict:
    """Loss and the norms of dL/dx at every block and dL/dW of every layer, for one target class."""
    man = model.manifest
    check_target(target, man["num_classes"])
    sess = registry.session(model, f"grad-{bn}")
    names = [o.name for o in sess.get_outputs()]
    t = np.full(images.shape[0], -1 if target is None else target, np.int64)  # -1: the predicted class
    out = dict(zip(names, sess.run(None, {"image": images, "gates": gates, "target": t}), strict=True))
    norms = finish_norms(out)
    logits = out["logits"]
    used = logits.argmax(axis=1) if target is None else t
    layers = _layer_norms(man, norms)
    names_ = class_names(man)
    loss = float(out["loss"])
    notes = nonfinite_note("the loss", ["loss"], [loss], "the softmax saturated or the logits overflowed")
    notes += nonfinite_note("gradient norms", list(norms), list(norms.values()), GRAD_WHY)
    return {
        "model": {"name": model.name, "weights": model.variant, "depth": man["depth"]},
        "loss": loss,
        "target": [int(i) for i in used],
        "target_label": [names_[int(i)] if names_ else str(int(i)) for i in used],
        "target_source": "predicted top-1" if target is None else "chosen",
        "gates": gates.tolist(),
        "bn": bn,
        "blocks": _block_norms(man, norms, gates),
        "layers": layers,
        "summary": _collapse_summary(man, layers),
        "notes": notes,
    }


def _block_norms(man: dict, norms: dict[str, float], gates: np.ndarray) -> list[dict]:
    """Every block's gate and the norms of dL/d(input) and dL/d(output)."""
    return [
        {
            "id": b["id"],
            "stage": b["stage"],
            "gate": float(gates[i]),
            "grad_norm_in": norms[f"grad_in:{b['id']}"],
            "grad_norm_out": norms[f"grad_out:{b['id']}"],
        }
        for i, b in enumerate(man["blocks"])
    ]


def _layer_norms(man: dict, norms: dict[str, float]) -> list[dict]:
    """Weight and activation gradient norms of every conv and fc layer, then weight and bias norms of every BN."""
    layers = [
        {
            "id": layer["id"],
            "kind": layer["kind"],
            "weight_grad_norm": norms[f"grad_w:{layer['id']}"],
            "activation_grad_norm": norms[f"grad_act:{layer['id']}"],
        }
        for layer in man["layers"]
    ]
    layers += [
        {
            "id": b["id"],
            "kind": "bn",
            "weight_grad_norm": norms[f"grad_w:{b['id']}"],
            "bias_grad_norm": norms[f"grad_b:{b['id']}"],
            "activation_grad_norm": None,
        }
        for b in man["batchnorm"]
    ]
    return layers


def _collapse_summary(man: dict, layers: list[dict]) -> dict:
    """The first block's first conv against the last block's last conv: their weight gradient norms and ratio."""
    first, last = first_last(man)
    gw = {layer["id"]: layer["weight_grad_norm"] for layer in layers}
    ratio = gw[first] / gw[last] if gw[last] > 0 and np.isfinite(gw[last]) and np.isfinite(gw[first]) else None
    return {
        "first_layer": first,
        "last_layer": last,
        "first_grad": gw[first],
        "last_grad": gw[last],
        "first_over_last": ratio,
    }


def first_last(manifest: dict) -> tuple[str, str]:
    """The first block's first conv and the last block's last conv (the collapse comparison)."""
    convs = [layer["id"] for layer in manifest["layers"] if layer["kind"] == "conv" and "downsample" not in layer["id"]]
    first_block, last_block = manifest["blocks"][0]["id"], manifest["blocks"][-1]["id"]
    first = next(c for c in convs if c.startswith(first_block + "."))
    last = [c for c in convs if c.startswith(last_block + ".")][-1]
    return first, last


def lesion(
    registry: ModelRegistry, model: LoadedModel, image: np.ndarray, gates: np.ndarray, target: int | None
) -> dict:
    """Target probability with each block's residual branch removed in turn, in one batched run."""
    man = model.manifest
    check_target(target, man["num_classes"])
    n = len(man["blocks"])
    branch = np.ones((n + 1, n), np.float32)
    branch[np.arange(1, n + 1), np.arange(n)] = 0.0  # row 0: intact; row i: block i-1's F(x) removed
    batch = np.repeat(image[:1], n + 1, axis=0)
    sess = registry.session(model, "lesion")
    (logits,) = sess.run(["logits"], {"image": batch, "gates": gates, "branch": branch})
    probs = softmax(logits)
    t = int(probs[0].argmax()) if target is None else target
    base = float(probs[0, t])
    names_ = class_names(man)
    why = "the network's logits overflowed float32"
    notes = nonfinite_note("lesioned networks", ["intact"] + [b["id"] for b in man["blocks"]], logits, why)
    return {
        "notes": notes,
        "model": {"name": model.name, "weights": model.variant},
        "target": t,
        "target_label": names_[t] if names_ else str(t),
        "base_probability": base,
        "bn": "running",
        "blocks": [
            {
                "id": b["id"],
                "stage": b["stage"],
                "probability": float(probs[i + 1, t]),
                "delta": float(probs[i + 1, t]) - base,
                "top1": int(probs[i + 1].argmax()),
            }
            for i, b in enumerate(man["blocks"])
        ],
    }


def _finite_or_none(value: float) -> float | None:
    """The value, or None when float32 overflowed to inf or NaN (JSON has no such numbers)."""
    return value if np.isfinite(value) else None


def sweep_row(registry: ModelRegistry, depth: int, image_bytes: bytes, weights: str, bn: str, prepare) -> dict:  # noqa: ANN001
    """One depth of the sweep: first-layer ||dL/dW|| with all shortcuts on and, in the plain net, off."""
    name = f"resnet{depth}"
    have = registry.variants(name)
    variant = weights if weights in have else "init"
    plain_variant = "plain" if weights == "trained" and "plain" in have else variant
    notes = []
    if variant != weights:
        notes.append(f"no {weights} weights for {name}: He-init weights used instead")
    if weights == "trained" and plain_variant != "plain":
        notes.append(f"no trained plain twin of {name}: the residual net's weights with every shortcut off")
    res = registry.get(name, variant)
    x = prepare(res, [image_bytes])
    nb = res.num_blocks
    on = gradients(registry, res, x, np.ones(nb, np.float32), bn, None)
    plain = registry.get(name, plain_variant)
    off = gradients(registry, plain, x, np.zeros(nb, np.float32), bn, None)
    row = {"depth": depth, "model": name, "fallback": bool(notes), "note": "; ".join(notes) or None}
    for key, run, v in (("residual", on, variant), ("plain", off, plain_variant)):
        first, loss = _finite_or_none(run["summary"]["first_grad"]), _finite_or_none(run["loss"])
        row[key] = {"weights": v, "first_grad": first, "loss": loss, "target_label": run["target_label"][0]}
        if first is None:
            extra = f"{key} net: the gradient overflowed float32 (not a number), left out"
            row["note"] = f"{row['note']}; {extra}" if row["note"] else extra
    return row


def sweep_payload(rows: list[dict], weights: str, bn: str, source: str) -> dict:
    """The depth-sweep answer from its rows (shallow first)."""
    rows = sorted(rows, key=lambda r: r["depth"])
    return {
        "notes": [f"{r['model']}: {r['note']}" for r in rows if r["note"]],
        "bn": bn,
        "weights": weights,
        "layer": "first block's first conv (dL/dW norm)",
        "source": source,
        "depths": [r["depth"] for r in rows],
        "residual": [r["residual"]["first_grad"] for r in rows],
        "plain": [r["plain"]["first_grad"] for r in rows],
        "fallbacks": [r["depth"] for r in rows if r["fallback"]],
        "rows": rows,
    }


def depth_sweep(
    registry: ModelRegistry,
    image_bytes: bytes,
    weights: str,
    bn: str,
    prepare,  # noqa: ANN001
    depths: tuple[int, ...] = SWEEP_DEPTHS,
) -> dict:
    """First-layer gradient norm against depth for the CIFAR ResNets, residual and plain."""
    rows = [sweep_row(registry, d, image_bytes, weights, bn, prepare) for d in depths]
    return sweep_payload(rows, weights, bn, "computed")


def collapse_row(registry: ModelRegistry, name: str, weights: str, bn: str, x: np.ndarray) -> dict:
    """First- and last-layer ||dL/dW|| with every shortcut on and every shortcut off (docs/collapse.md)."""
    model = registry.get(name, weights)
    n = model.num_blocks
    on = gradients(registry, model, x, np.ones(n, np.float32), bn, None)["summary"]
    off = gradients(registry, model, x, np.zeros(n, np.float32), bn, None)["summary"]
    values = {
        "on_first": on["first_grad"],
        "on_last": on["last_grad"],
        "off_first": off["first_grad"],
        "off_last": off["last_grad"],
    }
    if values["on_first"] == 0 or not np.isfinite(values["on_first"]):
        drop, verdict = None, "no gradient with shortcuts on"
    elif values["off_first"] == 0:
        drop, verdict = None, "complete: off is exactly 0"
    else:
        drop = values["on_first"] / values["off_first"]
        verdict = None if np.isfinite(drop) else "overflow"
    return {
        "model": name,
        "depth": model.manifest["depth"],
        "weights": weights,
        "bn": bn,
        "first_layer": on["first_layer"],
        "last_layer": on["last_layer"],
        **{k: _finite_or_none(v) for k, v in values.items()},
        "first_drop": _finite_or_none(drop) if drop is not None else None,
        "verdict": verdict,
    }
