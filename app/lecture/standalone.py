"""Standalone HTML export: one chart as one file that draws offline exactly as the app draws it.

The document carries plotly.js (the installed plotly package's bundle, the one the app serves at
/static/vendor/plotly.min.js), the chart builders of ``static/js/charts/`` (the ES modules that
``static/js/standalone.js`` imports, joined into one classic script by ``bundle``) and the API's
answers the chart reads, as JSON. Nothing is fetched: a Content-Security-Policy meta tag allows the
two inline scripts by their sha256 hashes and nothing else (``default-src 'none'``, no eval).
plotly.min.js carries a handful of URLs as data (the plotly logo link, map-tile attributions, an
icon CDN for map layers), written in its source as ``href="https://..."``; those are JS string
literals that no 2D chart uses, and their ``h`` is rewritten as the equivalent escape ``\\u0068`` so
that the HTML contains no ``src=``/``href=`` with an http(s) URL even as text.
"""

from __future__ import annotations

import base64
import hashlib
import html
import posixpath
import re
from functools import lru_cache
from typing import Any

import orjson

from app.paths import STATIC_DIR

JS_ROOT = STATIC_DIR / "js"  # beside app/ in a checkout, inside it in a wheel
ENTRY = "standalone.js"

# Attribute- or CSS-style references to another origin: src="http..", href='//..', url(https..), @import.
NETWORK_REF = re.compile(
    r"""(?:\b(?:src|href|action|poster|data)\s*=\s*["'`]?\s*(?:https?:|//))|(?:url\(\s*["']?\s*(?:https?:|//))|@import""",
    re.IGNORECASE,
)
# In plotly.min.js such text only occurs inside JS string / template literals, where \u0068 reads as "h".
_LITERAL_URL = re.compile(r"""(\b(?:src|href)\s*=\s*["'`])(h)(ttps?:)""", re.IGNORECASE)
_IMPORT = re.compile(r"""^import\s+(?:\{([^}]*)\}|\*\s+as\s+(\w+))\s+from\s+(['"])(\.{1,2}/[^'"]+)\3;?[ \t]*$""", re.M)
_EXPORT = re.compile(r"^export\s+((?:async\s+)?function\*?|const|let|class)\s+(\w+)", re.M)
_LEFT = re.compile(r"^(?:import|export)\b", re.M)

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
<body data-status="loading" data-chart="{chart}">
<header><h1>{title}</h1><p class="meta">{meta}</p></header>
<div id="chart" class="resviz-chart"></div>
<p class="caption" id="caption"></p>
<script type="application/json" id="resviz-data">{data_json}</script>
<script>{builders_js}</script>
</body>
</html>
"""


def _script_safe(text: str) -> str:
    """Script text that cannot end its <script> element early."""
    return text.replace("</script", "<\\/script")


def _module_script(path: str) -> tuple[str, list[str]]:
    """One ES module as the body of a function returning its exports, and the modules it imports."""
    source = (JS_ROOT / path).read_text(encoding="utf-8")
    deps: list[str] = []

    def imported(m: re.Match) -> str:
        names, namespace, _, spec = m.groups()
        dep = posixpath.normpath(posixpath.join(posixpath.dirname(path), spec))
        deps.append(dep)
        if namespace:
            return f"const {namespace} = modules[{orjson.dumps(dep).decode()}];"
        pairs = [p.strip() for p in names.split(",") if p.strip()]
        fields = ", ".join(p.replace(" as ", ": ") for p in pairs)
        return f"const {{ {fields} }} = modules[{orjson.dumps(dep).decode()}];"

    body = _IMPORT.sub(imported, source)
    exported = [m.group(2) for m in _EXPORT.finditer(body)]
    body = _EXPORT.sub(lambda m: f"{m.group(1)} {m.group(2)}", body)
    left = _LEFT.search(body)
    if left:
        line = body[: left.start()].count("\n") + 1
        raise ValueError(f"static/js/{path}:{line}: an import or export form the export bundle does not handle")
    return f"{body}\nreturn {{ {', '.join(exported)} }};", deps


@lru_cache(maxsize=4)
def bundle(entry: str = ENTRY) -> str:
    """``entry`` and every module it imports (static/js), as one classic script, dependencies first."""
    done: dict[str, str] = {}

    def visit(path: str, trail: tuple[str, ...]) -> None:
        if path in done:
            return
        if path in trail:
            raise ValueError(f"import cycle: {' -> '.join((*trail, path))}")
        body, deps = _module_script(path)
        for dep in deps:
            visit(dep, (*trail, path))
        done[path] = body

    visit(entry, ())
    parts = [f"modules[{orjson.dumps(p).decode()}] = (() => {{\n{body}\n}})();" for p, body in done.items()]
    return _script_safe('(() => {\n"use strict";\nconst modules = {};\n' + "\n".join(parts) + "\n})();")


@lru_cache(maxsize=1)
def inline_plotly_js() -> str:
    """plotly.min.js of the installed plotly package, safe inside a <script> element and free of URL attributes."""
    from plotly.offline import get_plotlyjs

    text = get_plotlyjs()
    text = _LITERAL_URL.sub(lambda m: m.group(1) + "\\u0068" + m.group(3), text)
    return _script_safe(text)


@lru_cache(maxsize=1)
def plotly_version() -> str:
    """Version of the plotly.js bundle shipped with the installed plotly package."""
    from plotly.offline import get_plotlyjs_version

    return get_plotlyjs_version()


@lru_cache(maxsize=8)
def script_hash(text: str) -> str:
    """The CSP source that allows one inline script: 'sha256-<base64 of its UTF-8 text's digest>'."""
    return f"'sha256-{base64.b64encode(hashlib.sha256(text.encode('utf-8')).digest()).decode()}'"


def csp(*scripts: str) -> str:
    """The export's policy: nothing from anywhere, inline styles, and exactly these inline scripts."""
    allowed = " ".join(script_hash(s) for s in scripts)
    return (
        f"default-src 'none'; script-src {allowed}; style-src 'unsafe-inline'; img-src data: blob:; "
        "font-src data:; connect-src 'none'; form-action 'none'; base-uri 'none'"
    )


def data_json(doc: dict[str, Any]) -> str:
    """The chart's answers as JSON (NaN and infinity as null, as the API sends them), safe inside <script>."""
    text = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def standalone_html(chart: str, data: dict[str, Any], sel: dict[str, Any], title: str, meta: str) -> str:
    """A complete HTML document that draws ``chart`` from ``data`` (the answers it reads) offline."""
    plotly_js, builders_js = inline_plotly_js(), bundle()
    doc = {"chart": chart, "sel": sel, "data": data, "filename": "resviz"}
    return PAGE.format(
        csp=csp(plotly_js, builders_js),
        plotly_version=html.escape(plotly_version()),
        title=html.escape(title),
        meta=html.escape(meta),
        chart=html.escape(chart),
        plotly_js=plotly_js,
        data_json=data_json(doc),
        builders_js=builders_js,
    )


def network_references(text: str) -> list[str]:
    """Every src=/href=/url()/@import reference to another origin in ``text`` (an exported page has none)."""
    return [m.group(0) for m in NETWORK_REF.finditer(text)]
