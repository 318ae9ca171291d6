"""``fovea-ray report``: figures (PNG) and a self-contained ``report.html`` from results.json.

:func:`render_report` reads a ``results.json`` (schema: :mod:`fovea_ray.stats.results`),
writes ``figures/*.png`` and ``report.html`` into the output folder, and returns the
HTML's path. Figures come from :mod:`fovea_ray.report.figures` (plain arrays in, PNG out),
the page from :mod:`fovea_ray.report.html` (no external URL).
"""

from fovea_ray.report.render import render_report

__all__ = ["render_report"]
