"""Lecture mode: any chart in a slide.

- ``catalogue``: every embeddable chart, the answers it reads and the selection a link makes;
- ``links``: chart links (``/embed/{chart}``, ``/api/export/{chart}.html``) parsed and checked;
- ``presets``: a lecture as a sequence of steps, shared in one link, and the example deck;
- ``export``: a chart link's answers gathered and written as one offline HTML file;
- ``standalone``: that file (plotly.js, the ``static/js/charts`` builders as one script, the data, a hash CSP).

The routes are in ``app/api/embed.py``; the figures themselves are drawn by ``static/js/charts/``.
"""
