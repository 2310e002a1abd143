"""The overview page: health at a glance, refreshed by the browser every 10 seconds."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template

from producers.console import chart, overview
from producers.console.auth import services

bp = Blueprint("pages", __name__)
REFRESH_SECONDS = 10


@bp.route("/", endpoint="overview")
def overview_page() -> Any:
    s = services()
    try:
        svg = chart.render(chart.Series(s.metrics.per_minute("syncs_total", 60)))
        legend = [(o, chart.colour(o)) for o in chart.OUTCOME_COLOURS]
        chart_error = None
    except Exception as exc:  # Redis down: the sections say so too
        svg, legend, chart_error = None, [], type(exc).__name__
    return render_template("overview.html", sections=overview.sections(s), chart=svg,
                           legend=legend, chart_error=chart_error,
                           refresh=REFRESH_SECONDS, now=overview.now_text())

