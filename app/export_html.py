"""Standalone HTML export: one figure with plotly.js inlined and its data as JSON; no network reference at all.

The document loads nothing: plotly.js (read from the installed plotly package) is inlined, styles are
inline, fonts are the system's, and a Content-Security-Policy meta tag (``default-src 'none'``) makes
the browser refuse any request the page might still attempt. plotly.min.js carries a handful of
URLs as data (the plotly logo link, map-tile attributions, an icon CDN for map layers), written in its
source as ``href="https://..."``; those are JS string literals that no 2D chart uses, and their ``h`` is
rewritten as the equivalent escape ``\\u0068`` so that the HTML contains no ``src=``/``href=`` with an
http(s) URL even as text.
"""

from __future__ import annotations

import html
import re
from functools import lru_cache
from typing import Any

import orjson

from app.figures import PLOT_CONFIG

# Attribute- or CSS-style references to another origin: src="http..", href='//..', url(https..), @import.
NETWORK_REF = re.compile(
    r"""(?:\b(?:src|href|action|poster|data)\s*=\s*["'`]?\s*(?:https?:|//))|(?:url\(\s*["']?\s*(?:https?:|//))|@import""",
    re.IGNORECASE,
)
# In plotly.min.js such text only occurs inside JS string / template literals, where \u0068 reads as "h".
_LITERAL_URL = re.compile(r"""(\b(?:src|href)\s*=\s*["'`])(h)(ttps?:)""", re.IGNORECASE)
CSP = (
    "default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; "
    "img-src data: blob:; font-src data:; connect-src 'none'; form-action 'none'; base-uri 'none'"
)

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="resviz (plotly.js {plotly_version}, inlined)">
<title>{title}</title>
<style>
html, body {{ margin: 0; height: 100%; background: #fff; color: #1d2330;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }}
body {{ display: flex; flex-direction: column; }}
header {{ padding: 8px 14px 0; }}
h1 {{ font-size: 15px; margin: 0; }}
.meta {{ font-size: 12px; color: #5d6675; margin: 2px 0 0; }}
#chart {{ flex: 1; min-height: 360px; }}
.caption {{ font-size: 12.5px; color: #5d6675; margin: 4px 14px 12px; max-width: 1100px; }}
</style>
<script>{plotly_js}</script>
</head>
<body>
<header><h1>{title}</h1><p class="meta">{meta}</p></header>
<div id="chart" class="resviz-chart"></div>
<p class="caption">{caption}</p>
<script type="application/json" id="resviz-figure">{figure_json}</script>
<script>
(function () {{
  var fig = JSON.parse(document.getElementById("resviz-figure").textContent);
  Plotly.newPlot("chart", fig.data, fig.layout, fig.config);
}})();
</script>
</body>
</html>
"""


@lru_cache(maxsize=1)
def inline_plotly_js() -> str:
    """plotly.min.js of the installed plotly package, safe inside a <script> element and free of URL attributes."""
    from plotly.offline import get_plotlyjs

    text = get_plotlyjs()
    text = _LITERAL_URL.sub(lambda m: m.group(1) + "\\u0068" + m.group(3), text)
    return text.replace("</script", "<\\/script")


def plotly_version() -> str:
    """Version of the plotly.js bundle shipped with the installed plotly package."""
    from plotly.offline import get_plotlyjs_version

    return get_plotlyjs_version()


def figure_json(fig: dict[str, Any]) -> str:
    """The figure (validated by plotly's graph objects) with its config, as JSON safe inside a <script> element."""
    import plotly.graph_objects as go

    layout = {**fig["layout"], "template": {}}
    checked = go.Figure(data=fig["data"], layout=layout).to_plotly_json()
    config = {**PLOT_CONFIG, "toImageButtonOptions": {**PLOT_CONFIG["toImageButtonOptions"], "filename": "resviz"}}
    text = orjson.dumps(
        {"data": checked["data"], "layout": checked["layout"], "config": config},
        default=_jsonable,
        option=orjson.OPT_SERIALIZE_NUMPY,  # NaN and infinity (an overflowed network) become null, as in the API
    ).decode()
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _jsonable(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def standalone_html(fig: dict[str, Any], title: str, meta: str) -> str:
    """A complete HTML document drawing ``fig`` ({data, layout, caption}) offline."""
    return PAGE.format(
        csp=CSP,
        plotly_version=html.escape(plotly_version()),
        title=html.escape(title),
        meta=html.escape(meta),
        caption=html.escape(fig.get("caption", "")),
        plotly_js=inline_plotly_js(),
        figure_json=figure_json(fig),
    )


def network_references(text: str) -> list[str]:
    """Every src=/href=/url()/@import reference to another origin in ``text`` (an exported page has none)."""
    return [m.group(0) for m in NETWORK_REF.finditer(text)]
