"""Lecture mode: any chart in a slide.

- ``catalogue``: every embeddable chart, the answers it reads and the selection a link makes;
- ``standalone``: one chart as one offline HTML file (plotly.js, the ``static/js/charts`` builders as one
  script, the data, a hash CSP).

The routes are in ``app/api/embed.py``; the figures themselves are drawn by ``static/js/charts/``.
"""
