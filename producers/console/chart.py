"""Syncs per minute by outcome as an inline SVG, drawn on the server (no script, no CDN)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from markupsafe import Markup, escape

OUTCOME_COLOURS = {"created": "#1b5e20", "updated": "#2e7d32", "synced": "#66bb6a",
                   "skipped": "#90a4ae", "retrying": "#ef6c00", "rejected": "#c62828"}
OTHER_COLOUR = "#6a1b9a"
WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 720, 180, 40, 22, 8


@dataclass(frozen=True)
class Series:
    minutes: list[tuple[int, dict[str, int]]]  # (epoch minute, {outcome: count}), oldest first

    @property
    def outcomes(self) -> list[str]:
        seen = {o for _, counts in self.minutes for o in counts}
        known = [o for o in OUTCOME_COLOURS if o in seen]
        return known + sorted(seen - set(OUTCOME_COLOURS))

    @property
    def total(self) -> int:
        return sum(sum(counts.values()) for _, counts in self.minutes)


def colour(outcome: str) -> str:
    return OUTCOME_COLOURS.get(outcome, OTHER_COLOUR)


def render(series: Series) -> Markup:
    """Stacked bars, one per minute, outcomes in a fixed order; a title per bar."""
    minutes = series.minutes or [(0, {})]
    peak = max(1, *(sum(c.values()) for _, c in minutes))
    plot_w, plot_h = WIDTH - LEFT - 4, HEIGHT - BOTTOM - TOP
    bar_w = plot_w / len(minutes)
    parts = [f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" '
             f'width="{WIDTH}" height="{HEIGHT}" xmlns="http://www.w3.org/2000/svg">',
             f"<title>Syncs per minute, last {len(minutes)} minutes</title>",
             f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - 4}" y2="{TOP + plot_h}" '
             'stroke="#999"/>',
             f'<text x="{LEFT - 4}" y="{TOP + 10}" text-anchor="end">{peak}</text>',
             f'<text x="{LEFT - 4}" y="{TOP + plot_h}" text-anchor="end">0</text>']
    for i, (start, counts) in enumerate(minutes):
        x = LEFT + i * bar_w
        y = float(TOP + plot_h)
        label = _clock(start)
        tip = ", ".join(f"{o} {n}" for o, n in counts.items()) or "none"
        for outcome in series.outcomes:
            n = counts.get(outcome, 0)
            if not n:
                continue
            h = plot_h * n / peak
            y -= h
            parts.append(f'<rect x="{x + 0.5:.1f}" y="{y:.1f}" width="{max(bar_w - 1, 1):.1f}" '
                         f'height="{h:.1f}" fill="{colour(outcome)}">'
                         f"<title>{escape(label)}: {escape(tip)}</title></rect>")
        if i % 10 == 0 or i == len(minutes) - 1:
            # The newest minute's label ends at the right edge instead of running past it.
            anchor = ' text-anchor="end"' if i == len(minutes) - 1 and i else ""
            x_text = x + bar_w if anchor else x
            parts.append(f'<text x="{x_text:.1f}" y="{HEIGHT - 6}"{anchor}>'
                         f"{escape(label)}</text>")
    parts.append("</svg>")
    return Markup("".join(parts))


def _clock(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%H:%M")
