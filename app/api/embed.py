"""Lecture mode: the chart catalogue, embeddable charts, standalone HTML export and presets.

``/embed/{chart}?model=&image=&weights=&gates=&bn=&layer=&block=&channel=&range=`` renders one chart
filling its iframe (``templates/embed.html`` + ``static/js/embed.js``, drawn by the main page's
figure builders). ``/api/export/{chart}.html`` (same parameters) returns the chart as one offline
HTML file drawn by the same builders. ``/presets`` composes a sequence of views; ``/presets/play?steps=``
steps through it.
Parameters are checked here, before any chart is drawn: a bad link gets a 4xx with a readable message
(an HTML page for /embed and /presets, JSON for /api).
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from app.api.deps import GateDep, RegistryDep, ServiceDep, StoreDep
from app.api.pages import TEMPLATES
from app.lecture.catalogue import CHARTS, Chart, Selection, feature_map_choice
from app.lecture.standalone import standalone_html
from app.runtime.admission import Job
from app.runtime.preprocess import sha256_bytes
from app.runtime.registry import ModelRegistry, UnknownModelError, parse_bn, parse_gates
from app.runtime.samples import probe_png, sample_bytes, samples
from app.runtime.service import AnalysisService, RequestError
from app.runtime.store import ID_RE, ImageStore
from app.specs import SPECS

router = APIRouter(tags=["lecture"])
DEFAULT_MODEL = "resnet20"
RANGES = ("common", "own")
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


class LinkError(Exception):
    """A link that cannot be drawn: HTTP status and a message for the reader."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class ChartLink:
    """A checked chart link: what to draw and how to get its data."""

    chart: Chart
    model: str
    weights: str | None  # as the link gives it (None: the model's default weights)
    variant: str  # the weights actually used
    gates: str  # all-on | all-off | comma list (checked)
    bn: str
    image: str  # as the link gives it: a stored id or a sample name ("" for the depth sweep)
    image_id: str | None  # sha256 of the image bytes
    sel: Selection
    caption: bool

    @property
    def sweep_weights(self) -> str | None:
        """Weights the depth sweep uses, as on the main page (the model's own when CIFAR init/trained)."""
        cifar = SPECS[self.model].family == "cifar"
        return self.weights if cifar and self.weights in ("init", "trained") else None

    def query(self) -> dict[str, str]:
        """The link's parameters, defaults left out (for the 'open in resviz' link and file names)."""
        q = {"model": self.model, "weights": self.weights or "", "image": self.image}
        q |= {"gates": self.gates if self.gates != "all-on" else "", "bn": self.bn if self.bn != "running" else ""}
        q |= {
            "layer": self.sel.layer,
            "block": self.sel.block,
            "range": self.sel.range if self.sel.range != "common" else "",
        }
        q["channel"] = "" if self.sel.channel is None else str(self.sel.channel)
        return {k: v for k, v in q.items() if v}

    def describe(self) -> str:
        """One line naming the model, weights, image, gates and BN mode."""
        parts = [f"model {self.model}", f"weights {self.variant}"]
        if self.chart.image:
            parts.append(f"image {self.image if self.image in samples() else self.image[:12] + '…'}")
        parts += [f"gates {self.gates}", f"BN {self.bn} statistics"]
        for key in ("layer", "block"):
            if getattr(self.sel, key):
                parts.append(f"{key} {getattr(self.sel, key)}")
        if self.sel.channel is not None:
            parts.append(f"channel {self.sel.channel}")
        return ", ".join(parts)


def _normal_gates(text: str, values: Any) -> str:
    if all(v == 1 for v in values):
        return "all-on"
    if all(v == 0 for v in values):
        return "all-off"
    return text


def parse_link(chart_id: str, q: dict[str, str], registry: ModelRegistry) -> ChartLink:
    """Check a chart link's parameters (not the image, nor layer and block, which need the store and manifest)."""
    chart = CHARTS.get(chart_id)
    if chart is None:
        raise LinkError(404, f"unknown chart {chart_id!r}; the charts are: {', '.join(CHARTS)}")
    model = (q.get("model") or DEFAULT_MODEL).strip()
    if model not in SPECS:
        raise LinkError(404, f"unknown model {model[:60]!r}; known models: {', '.join(SPECS)}")
    weights = (q.get("weights") or "").strip() or None
    try:
        variant = registry.resolve_variant(model, weights)
    except UnknownModelError as exc:
        raise LinkError(404, str(exc)) from None
    gates_text = (q.get("gates") or "all-on").strip()
    try:
        gates = _normal_gates(gates_text, parse_gates(gates_text, SPECS[model].num_blocks))
        bn = parse_bn(q.get("bn") or None)
    except ValueError as exc:
        raise LinkError(400, str(exc)) from None
    channel = None
    raw = (q.get("channel") or "").strip()
    if raw:
        if not raw.isdigit() or len(raw) > 6:
            raise LinkError(400, f"channel must be a whole number ≥ 0, got {raw[:40]!r}")
        channel = int(raw)
    rng = (q.get("range") or "common").strip()
    if rng not in RANGES:
        raise LinkError(400, f"range must be one of {', '.join(RANGES)}, got {rng[:40]!r}")
    sel = Selection(
        layer=(q.get("layer") or "").strip(), block=(q.get("block") or "").strip(), channel=channel, range=rng
    )
    caption = (q.get("caption") or "").strip().lower() in ("1", "true", "yes", "on")
    image = (q.get("image") or "").strip() if chart.image else ""
    return ChartLink(chart, model, weights, variant, gates, bn, image, None, sel, caption)


def resolve_image(link: ChartLink, store: ImageStore) -> bytes | None:
    """The link's image bytes (None for charts without one); nothing is written anywhere."""
    if not link.chart.image:
        return None
    names = ", ".join(samples())
    if not link.image:
        raise LinkError(
            400, f"the {link.chart.id} chart needs an image: image=<stored image id or sample name> (samples: {names})"
        )
    if ID_RE.match(link.image):
        try:
            blob = store.get(link.image)
        except KeyError:
            raise LinkError(
                404,
                f"no stored image with id {link.image}: it was never uploaded to this server, or "
                "it was deleted (`resviz images list` shows what is stored)",
            ) from None
        link.image_id = link.image
        return blob
    if link.image in samples():
        blob = sample_bytes(link.image)
        link.image_id = sha256_bytes(blob)  # the API serves samples by their hash without storing them
        return blob
    raise LinkError(
        404,
        f"unknown image {link.image[:80]!r}: neither a stored image id (64 hex characters) nor a "
        f"built-in sample ({names})",
    )


def check_selection(link: ChartLink, manifest: dict) -> None:
    """The link's layer and block must exist in the model."""
    taps = [t["id"] for t in manifest["taps"]]
    blocks = [b["id"] for b in manifest["blocks"]]
    if link.sel.layer and link.sel.layer not in taps:
        raise LinkError(
            400,
            f"unknown layer {link.sel.layer[:60]!r} for {link.model}; its taps run from "
            f"{taps[0]} to {taps[-1]} (e.g. {', '.join(taps[:4])}, …)",
        )
    if link.sel.block and link.sel.block not in blocks:
        raise LinkError(
            400,
            f"unknown block {link.sel.block[:60]!r} for {link.model}; its blocks are "
            f"{', '.join(blocks[:6])}{', …' if len(blocks) > 6 else ''}",
        )


async def checked_link(
    chart_id: str, request: Request, registry: ModelRegistry, store: ImageStore
) -> tuple[ChartLink, bytes | None]:
    """Parse and check everything a chart link names; LinkError on the first problem."""
    link = parse_link(chart_id, dict(request.query_params), registry)
    blob = resolve_image(link, store)
    if link.chart.id != "depth-sweep" and (link.sel.layer or link.sel.block):
        try:
            model = await run_in_threadpool(registry.get, link.model, link.weights)
        except UnknownModelError as exc:
            raise LinkError(404, str(exc)) from None
        check_selection(link, model.manifest)
    return link, blob


# ---------------------------------------------------------------- catalogue


@router.get("/api/charts")
def list_charts() -> list[dict]:
    """Every embeddable chart: id, title, main-page view and element, the data endpoints it needs, its parameters."""
    return [c.row() for c in CHARTS.values()]


# ---------------------------------------------------------------- embeds


def _message_page(request: Request, status: int, message: str, title: str) -> HTMLResponse:
    return TEMPLATES.TemplateResponse(
        request, "embed.html", {"error": message, "status": status, "title": title}, status_code=status
    )


@router.get("/embed/{chart}", response_class=HTMLResponse, include_in_schema=False)
async def embed_chart(chart: str, request: Request, registry: RegistryDep, store: StoreDep) -> HTMLResponse:
    """One chart filling its iframe, drawn in the browser from the API's data."""
    try:
        link, _ = await checked_link(chart, request, registry, store)
    except LinkError as exc:
        heading = {404: "Not found", 507: "Image store full"}.get(exc.status, "Bad link")
        return _message_page(request, exc.status, exc.message, heading)
    config = {
        "chart": link.chart.id,
        "title": link.chart.title,
        "model": link.model,
        "weights": link.weights,
        "image": link.image,
        "image_id": link.image_id,
        "gates": link.gates,
        "bn": link.bn,
        "layer": link.sel.layer,
        "block": link.sel.block,
        "channel": link.sel.channel,
        "range": link.sel.range,
        "sweep_weights": link.sweep_weights,
        "caption": link.caption,
    }
    main_query = {**link.query(), "view": link.chart.view} if link.chart.view else link.query()
    context = {
        "error": None,
        "title": link.chart.title,
        "config": config,
        "describe": link.describe(),
        "open_url": "/?" + urlencode({k: v for k, v in main_query.items() if v}),
    }
    return TEMPLATES.TemplateResponse(request, "embed.html", context)


# ---------------------------------------------------------------- standalone export


def _payload(payload: Any) -> dict:
    """An answer as the API sends it (numbers that were not finite are null)."""
    return payload.json()


def pinned_target(link: ChartLink, blob: bytes, service: AnalysisService) -> int:
    """The class the full residual network (every shortcut on) predicts: the target of every gradient run."""
    full = service.gradients(link.model, [blob], weights=link.weights, gates="all-on", bn=link.bn, target=None)
    return int(_payload(full)["target"][0])


def gather(link: ChartLink, blob: bytes | None, service: AnalysisService) -> dict:
    """The answers a chart reads, exactly as the API gives them to an embed (static/js/embed.js)."""
    if link.chart.id == "depth-sweep":
        return {
            "sweep": _payload(service.depth_sweep(probe_png(), weights=link.sweep_weights or "trained", bn=link.bn))
        }
    assert blob is not None
    common = {"weights": link.weights, "gates": link.gates}
    analysis = _payload(service.analyze(link.model, [blob], bn=link.bn, **common))
    data: dict[str, Any] = {"analysis": analysis}
    if link.chart.id == "featuremaps":
        choice = feature_map_choice(analysis, link.sel)
        if choice is None:
            raise RequestError("this analysis has no feature maps")
        tap, channel = choice
        job = service.featuremap_job(link.model, blob, tap=tap, channel=channel, bn=link.bn, **common)
        data["featuremap"] = _payload(service.compute(job))
    elif link.chart.id == "gradients":
        target = pinned_target(link, blob, service)
        wanted = {"residual": "all-on", "plain": "all-off"}
        if link.gates not in ("all-on", "all-off"):
            wanted["current"] = link.gates
        data["runs"] = {
            key: _payload(
                service.gradients(link.model, [blob], weights=link.weights, gates=g, bn=link.bn, target=target)
            )
            for key, g in wanted.items()
        }
    elif link.chart.id == "lesion":
        data["lesion"] = _payload(service.lesion(link.model, blob, target=pinned_target(link, blob, service), **common))
    return data


def export_document(link: ChartLink, blob: bytes | None, service: AnalysisService) -> str:
    """The standalone HTML of one chart link: its answers, drawn in the file by the app's builders."""
    data = gather(link, blob, service)
    stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime())
    title = f"{link.chart.title} · {link.model}"
    sel = {"layer": link.sel.layer, "block": link.sel.block, "channel": link.sel.channel, "range": link.sel.range}
    return standalone_html(link.chart.id, data, sel, title, f"resviz export, {stamp}: {link.describe()}")


@router.get("/api/export/{chart}.html", tags=["lecture"])
async def export_chart(
    chart: str, request: Request, registry: RegistryDep, service: ServiceDep, store: StoreDep, gate: GateDep
) -> Response:
    """One chart as a standalone HTML file: plotly.js and the chart builders inlined, its data as JSON, offline."""
    try:
        link, blob = await checked_link(chart, request, registry, store)
    except LinkError as exc:
        return JSONResponse({"detail": exc.message}, status_code=exc.status)
    key = ("export", link.chart.id, link.image_id, tuple(sorted(link.query().items())))
    job = Job(key, lambda: export_document(link, blob, service), cost=f"export:{link.model}", cache=False)
    text = await gate.submit(job, request.is_disconnected)
    image = link.image if link.image in samples() else link.image[:10]
    name = "-".join(p for p in ("resviz", link.chart.id, link.model, image) if p)
    disposition = "attachment" if request.query_params.get("download") in ("1", "true") else "inline"
    return Response(
        text,
        media_type="text/html; charset=utf-8",
        headers={"Content-Disposition": f'{disposition}; filename="{name}.html"', "Cache-Control": "no-store"},
    )


# ---------------------------------------------------------------- presets


def step_url(step: dict) -> str:
    """Where a preset step points: an embed, or the main page with hide= parameters."""
    q = {k: v for k, v in parse_qsl(step["query"], keep_blank_values=False) if k in STEP_KEYS}
    if step["mode"] == "page":
        chart = CHARTS[step["chart"]]
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


def _presets_page(
    request: Request, mode: str, steps: list[dict] | None, error: str | None = None, status: int = 200
) -> HTMLResponse:
    context = {
        "mode": mode,
        "steps": steps,
        "error": error,
        "charts": [c.row() for c in CHARTS.values()],
        "example": check_steps(EXAMPLE_PRESET),
    }
    return TEMPLATES.TemplateResponse(request, "presets.html", context, status_code=status)


@router.get("/presets", response_class=HTMLResponse, include_in_schema=False)
def presets_page(request: Request, steps: str | None = None) -> HTMLResponse:
    """Compose a sequence of views (steps kept in the browser); ``steps=`` opens a shared sequence for editing."""
    try:
        decoded = decode_steps(steps) if steps else None
    except LinkError as exc:
        return _presets_page(request, "edit", None, exc.message, exc.status)
    return _presets_page(request, "edit", decoded)


@router.get("/presets/play", response_class=HTMLResponse, include_in_schema=False)
def presets_play(request: Request, steps: str | None = None) -> HTMLResponse:
    """Step through a shared sequence of views, one at a time (next/previous, arrow keys)."""
    if not steps:
        return _presets_page(request, "play", None, "this link names no steps (steps=<base64url JSON>)", 400)
    try:
        decoded = decode_steps(steps)
    except LinkError as exc:
        return _presets_page(request, "play", None, exc.message, exc.status)
    return _presets_page(request, "play", decoded)
