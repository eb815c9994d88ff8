"""Presets: a lecture as a sequence of steps, each an embedded chart or the main page with controls hidden.

A shared preset travels in its link as the base64url-encoded JSON of its steps (``/presets?steps=``,
``/presets/play?steps=``), written by ``static/js/presets.js`` and checked here.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any
from urllib.parse import parse_qsl, urlencode

from app.lecture.catalogue import CHARTS
from app.lecture.links import LinkError

# Query keys a preset step may carry (the embed parameters plus the main page's view, hide and overlay).
STEP_KEYS = (
    "model",
    "weights",
    "image",
    "gates",
    "bn",
    "layer",
    "block",
    "channel",
    "range",
    "caption",
    "view",
    "hide",
    "overlay",
)
MAX_STEPS = 100


def step_url(step: dict) -> str:
    """Where a preset step points: an embed, or the main page with hide= parameters."""
    q = {k: v for k, v in parse_qsl(step["query"], keep_blank_values=False) if k in STEP_KEYS}
    if step["mode"] == "page":
        chart = CHARTS[step["chart"]]
        if chart.page != "/":  # a chart of another page (the lab) has no Explore view to show
            return chart.page
        if chart.view:
            q.setdefault("view", chart.view)
        if step.get("hide"):
            q["hide"] = step["hide"]
        q.pop("caption", None)
        return "/?" + urlencode(q, safe=",")
    q.pop("view", None)
    q.pop("hide", None)
    q.pop("overlay", None)
    return f"/embed/{step['chart']}?" + urlencode(q, safe=",")


def _text(value: Any, what: str, limit: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise LinkError(400, f"a step's {what} must be text")
    return value.strip()[:limit]


def check_steps(raw: Any) -> list[dict]:
    """A list of preset steps: each {title, chart, mode: embed|page, query, hide}, with its url added."""
    if not isinstance(raw, list) or not raw:
        raise LinkError(400, "a preset is a non-empty JSON list of steps")
    if len(raw) > MAX_STEPS:
        raise LinkError(400, f"a preset has at most {MAX_STEPS} steps, this one {len(raw)}")
    steps = []
    for i, s in enumerate(raw, 1):
        if not isinstance(s, dict):
            raise LinkError(400, f"step {i} is not an object")
        chart = _text(s.get("chart"), "chart", 40)
        if chart not in CHARTS:
            raise LinkError(400, f"step {i}: unknown chart {chart!r}; the charts are: {', '.join(CHARTS)}")
        mode = _text(s.get("mode"), "mode", 10) or "embed"
        if mode not in ("embed", "page"):
            raise LinkError(400, f"step {i}: mode must be 'embed' or 'page', got {mode!r}")
        step = {
            "title": _text(s.get("title"), "title", 200) or CHARTS[chart].title,
            "chart": chart,
            "mode": mode,
            "query": _text(s.get("query"), "query", 4000),
            "hide": _text(s.get("hide"), "hide", 400),
        }
        step["url"] = step_url(step)
        steps.append(step)
    return steps


def decode_steps(text: str) -> list[dict]:
    """Steps from the base64url-encoded JSON of a shared preset link."""
    text = text.strip()
    if len(text) > 60_000:
        raise LinkError(414, "the steps parameter is too long")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        data = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise LinkError(400, "the steps parameter is not base64url-encoded JSON (was the link cut short?)") from None
    return check_steps(data)


def encode_steps(steps: list[dict]) -> str:
    """base64url (no padding) of the steps' JSON, as presets.js writes it."""
    keep = [{k: s[k] for k in ("title", "chart", "mode", "query", "hide") if s.get(k)} for s in steps]
    raw = json.dumps(keep, separators=(",", ":"), ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _step(chart: str, title: str, mode: str = "embed", hide: str = "", **query: str) -> dict:
    return {"title": title, "chart": chart, "mode": mode, "query": urlencode(query, safe=","), "hide": hide}


# A sample lecture: what a shortcut does, on the CIFAR ResNets and the built-in pictures.
EXAMPLE_PRESET = [
    # Every step that shows a prediction uses trained CIFAR weights on an image from their own data
    # set (the generated shapes), so the class it names means something.
    _step(
        "prediction",
        "What the trained ResNet-20 predicts for a ring",
        model="resnet20",
        weights="trained",
        image="set-ring",
    ),
    _step("activations", "Activations layer by layer", model="resnet20", image="shapes-32"),
    _step(
        "batchnorm",
        "Batch norm with batch statistics",
        model="resnet20",
        image="shapes-32",
        bn="batch",
        layer="layer1.0.bn1",
    ),
    _step("residuals", "How big is F(x) next to x? (ResNet-56)", model="resnet56", image="shapes-32"),
    _step("residual-scatter", "F(x) against x: a residual plot", model="resnet56", image="shapes-32", block="layer1.0"),
    # The collapse preset: trained ResNet-56, BN running statistics (docs/collapse.md: the largest
    # finite drop of the first layer's gradient when every shortcut is switched off).
    _step("gradients", "Gradients with and without shortcuts", model="resnet56", weights="trained", image="set-ring"),
    _step("depth-sweep", "First-layer gradient against depth", model="resnet56", weights="trained"),
    _step("lesion", "Remove one block at a time", model="resnet56", weights="trained", image="set-ring"),
    _step(
        "featuremaps", "A feature map of the first stage", model="resnet20", image="checkerboard-32", layer="layer1.0"
    ),
    _step(
        "residuals",
        "The same, on the full page",
        "page",
        "nav,controls,strip,tabs,share",
        model="resnet20",
        image="shapes-32",
    ),
]


def presets_context(mode: str, steps: list[dict] | None, error: str | None = None) -> dict[str, Any]:
    """What ``templates/presets.html`` needs: the mode (edit | play), the steps, the catalogue and the example."""
    return {
        "mode": mode,
        "steps": steps,
        "error": error,
        "charts": [c.row() for c in CHARTS.values()],
        "example": check_steps(EXAMPLE_PRESET),
    }
