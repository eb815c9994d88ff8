"""A chart link as one standalone HTML file: the answers the chart reads, drawn in the file by the app's builders.

``gather`` asks the analysis service exactly what an embed (``static/js/embed.js``) asks the API;
``export_document`` hands those answers to :func:`app.lecture.standalone.standalone_html`.
"""

from __future__ import annotations

import time
from typing import Any

from app.lecture.catalogue import (
    BN_CLAIMS_CHARTS,
    LANDSCAPE,
    NORMALIZATION_CHARTS,
    explain_options,
    feature_map_choice,
    norm_layer_choice,
    strip_options,
)
from app.lecture.links import ChartLink
from app.lecture.standalone import standalone_html
from app.runtime import landscapes
from app.runtime import shattered as shatter
from app.runtime.samples import probe_png, samples
from app.runtime.service import AnalysisService, RequestError


def _payload(payload: Any) -> dict:
    """An answer as the API sends it (numbers that were not finite are null)."""
    return payload.json()


def pinned_target(link: ChartLink, blob: bytes, service: AnalysisService) -> int:
    """The class the full residual network (every shortcut on) predicts: the target of every gradient run."""
    full = service.gradients(link.model, [blob], weights=link.weights, gates="all-on", bn=link.bn, target=None)
    return int(_payload(full)["target"][0])


def explanations(link: ChartLink, blob: bytes, service: AnalysisService) -> dict:
    """The explain answers a chart reads: the map at the link's layer, or the two strips of every layer's map
    (the link's gates, then every gate 0 for the class the first one explained), as static/js/embed.js asks."""

    def explain(gates: str, options: dict) -> dict:
        return _payload(service.explain(link.model, blob, weights=link.weights, gates=gates, bn=link.bn, **options))

    if link.chart.id == "explain":
        return {"explanation": explain(link.gates, explain_options(link.sel, link.explain_layer))}
    options = strip_options(link.sel)
    residual = explain(link.gates, options)
    return {"strips": {"residual": residual, "plain": explain("all-off", {**options, "target": residual["target"]})}}


def gather(link: ChartLink, blob: bytes | None, service: AnalysisService) -> dict:
    """The answers a chart reads, exactly as the API gives them to an embed (static/js/embed.js)."""
    if LANDSCAPE in link.chart.endpoints:
        return {"landscape": landscapes.pair(link.model)}
    if link.chart.id == "depth-sweep":
        return {
            "sweep": _payload(service.depth_sweep(probe_png(), weights=link.sweep_weights or "trained", bn=link.bn))
        }
    if link.chart.id.startswith("shattered-"):
        return {"shattered": shatter.lab_study(), "model": link.model}
    if link.chart.id in BN_CLAIMS_CHARTS:
        from app.runtime.bnclaims import bn_claims

        return {"bnclaims": bn_claims()}
    assert blob is not None
    if link.explains:
        return explanations(link, blob, service)
    common = {"weights": link.weights, "gates": link.gates}
    if link.chart.id in NORMALIZATION_CHARTS:
        job = service.normalizations_job(link.model, blob, layer=norm_layer_choice(link.sel), groups=None, **common)
        return {"norms": _payload(service.compute(job))}
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
    if link.explains:
        sel |= {**link.sel.explain_fields(), "explain_layer": link.explain_layer}
    return standalone_html(link.chart.id, data, sel, title, f"resviz export, {stamp}: {link.describe()}")


def export_key(link: ChartLink) -> tuple:
    """The admission gate's key of a link's export (one export at a time per link)."""
    return ("export", link.chart.id, link.image_id, tuple(sorted(link.query().items())))


def export_filename(link: ChartLink) -> str:
    """The file name an export is offered under: resviz-<chart>-<model>-<image>.html."""
    image = link.image if link.image in samples() else link.image[:10]
    return "-".join(p for p in ("resviz", link.chart.id, link.model, image) if p) + ".html"
