"""Chart links: the parameters of ``/embed/{chart}`` and ``/api/export/{chart}.html``, checked before anything is drawn.

A link names a chart, a model, its weights, an image (a stored id or a built-in sample), the
shortcut gates, the BN mode and what to select (layer, block, channel, range). A bad link raises
:class:`LinkError` with an HTTP status and a message for the reader.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool

from app.lecture.catalogue import CHARTS, Chart, Selection
from app.runtime.preprocess import sha256_bytes
from app.runtime.registry import ModelRegistry, UnknownModelError, parse_bn, parse_gates
from app.runtime.samples import sample_bytes, samples
from app.runtime.store import ID_RE, ImageStore
from app.specs import SPECS

DEFAULT_MODEL = "resnet20"
RANGES = ("common", "own")


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
    chart_id: str, query: dict[str, str], registry: ModelRegistry, store: ImageStore
) -> tuple[ChartLink, bytes | None]:
    """Parse and check everything a chart link names; LinkError on the first problem."""
    link = parse_link(chart_id, query, registry)
    blob = resolve_image(link, store)
    if link.chart.id != "depth-sweep" and (link.sel.layer or link.sel.block):
        try:
            model = await run_in_threadpool(registry.get, link.model, link.weights)
        except UnknownModelError as exc:
            raise LinkError(404, str(exc)) from None
        check_selection(link, model.manifest)
    return link, blob


def error_heading(status: int) -> str:
    """The heading of the page that explains a bad link."""
    return {404: "Not found", 507: "Image store full"}.get(status, "Bad link")


def embed_context(link: ChartLink) -> dict[str, Any]:
    """What ``templates/embed.html`` needs to draw a checked link: its config, description and main-page link."""
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
    open_url = (
        link.chart.page if link.chart.page != "/" else "/?" + urlencode({k: v for k, v in main_query.items() if v})
    )
    return {
        "error": None,
        "title": link.chart.title,
        "config": config,
        "describe": link.describe(),
        "open_url": open_url,
    }
