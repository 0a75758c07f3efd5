"""Charts of values per day, drawn on the server as inline SVG: no script, no library, nothing
fetched from elsewhere, and the page reads the same in every browser and in a screenshot.

A chart is stacked bars (series that are parts of a whole) or lines with a point per day
(series that overlap), with a title, a legend, a y axis of round numbers and day labels. Each
bar and point carries a <title> (its day, series and value) that a browser shows on hover.
"""

import datetime
import math
from collections.abc import Sequence

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from invoicegen.dashboard.activity import Activity, Series

WIDTH, HEIGHT = 600, 300
LEFT, RIGHT, TOP, BOTTOM = 52, 12, 62, 28  # margins: y labels, title and legend, day labels
TICKS = 5
LEGEND_ROW, LEGEND_SWATCH = 18, 10
# Okabe and Ito's palette, told apart with any colour vision, then two neutral tones.
COLOURS = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442"]
COLOURS += ["#7f7f7f", "#000000"]


def axis_step(peak: int) -> int:
    """A round step (1, 2 or 5 times a power of ten, at least 1) giving at most TICKS steps
    up to `peak`."""
    raw = max(peak, 1) / TICKS
    magnitude = 10 ** math.floor(math.log10(raw))
    return max(1, next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw))


def daily_chart(
    title: str, days: Sequence[datetime.date], series: Sequence[Series], *, stacked: bool
) -> SafeString:
    peak = max(
        (sum(values) for values in zip(*(s.values for s in series), strict=True))
        if stacked
        else (max(s.values) for s in series),
        default=0,
    )
    step = axis_step(peak)
    top = step * max(1, math.ceil(peak / step))
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_width / len(days)

    def x(index: int) -> float:
        return LEFT + slot * (index + 0.5)

    def y(value: float) -> float:
        return TOP + plot_height * (1 - value / top)

    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'xmlns="http://www.w3.org/2000/svg" font-family="sans-serif" font-size="12">',
        f"<title>{escape(title)}</title>",
        f'<text class="chart-title" x="{LEFT}" y="18" font-size="15" font-weight="bold">'
        f"{escape(title)}</text>",
        *_legend(series),
    ]
    for value in range(0, top + 1, step):
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(value):.1f}" y2="{y(value):.1f}" '
            f'stroke="#ddd"/><text x="{LEFT - 6}" y="{y(value) + 4:.1f}" text-anchor="end" '
            f'fill="#444">{value:,}</text>'
        )
    label_every = max(1, math.ceil(len(days) / 8))
    for index, day in enumerate(days):
        if (len(days) - 1 - index) % label_every == 0:  # the newest day always has its label
            parts.append(
                f'<text x="{x(index):.1f}" y="{HEIGHT - 8}" text-anchor="middle" fill="#444">'
                f"{day:%b} {day.day}</text>"
            )
    parts += _stacked_bars(days, series, x, y, slot) if stacked else _lines(days, series, x, y)
    parts.append(
        f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(0):.1f}" y2="{y(0):.1f}" stroke="#444"/>'
    )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 (every label is escaped above)


def dashboard_charts(activity: Activity) -> list[SafeString]:
    days = activity.days
    return [
        daily_chart("Audit entries per day, by category", days, activity.audit_by_category,
                    stacked=True),
        daily_chart("Failed logins and security events per day", days, activity.security,
                    stacked=True),
        daily_chart("Email outbox per day", days, activity.outbox, stacked=False),
        daily_chart("Downloads per day", days, activity.downloads, stacked=True),
    ]  # fmt: skip


def _legend(series: Sequence[Series]) -> list[str]:
    parts, left, row = [], LEFT, 0
    for index, one in enumerate(series):
        width = LEGEND_SWATCH + 10 + 7 * len(one.label) + 16
        if left + width > WIDTH - RIGHT and left > LEFT:
            left, row = LEFT, row + 1
        top = 30 + row * LEGEND_ROW
        parts.append(
            f'<g class="legend-item"><rect x="{left}" y="{top}" width="{LEGEND_SWATCH}" '
            f'height="{LEGEND_SWATCH}" fill="{COLOURS[index % len(COLOURS)]}"/>'
            f'<text x="{left + LEGEND_SWATCH + 5}" y="{top + 9}">{escape(one.label)}</text></g>'
        )
        left += width
    return parts


def _hover(day: datetime.date, one: Series, value: int) -> str:
    return f"<title>{day:%b} {day.day}, {escape(one.label)}: {value:,}</title>"


def _stacked_bars(days, series, x, y, slot) -> list[str]:
    parts, below = [], [0] * len(days)
    width = slot * 0.7
    for index, one in enumerate(series):
        colour = COLOURS[index % len(COLOURS)]
        for day_index, value in enumerate(one.values):
            if value:
                base = below[day_index]
                below[day_index] += value
                parts.append(
                    f'<rect class="bar" x="{x(day_index) - width / 2:.1f}" '
                    f'y="{y(below[day_index]):.1f}" width="{width:.1f}" '
                    f'height="{y(base) - y(below[day_index]):.1f}" fill="{colour}">'
                    f"{_hover(days[day_index], one, value)}</rect>"
                )
    return parts


def _lines(days, series, x, y) -> list[str]:
    parts = []
    for index, one in enumerate(series):
        colour = COLOURS[index % len(COLOURS)]
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(one.values))
        parts.append(
            f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>'
        )
        parts += [
            f'<circle class="point" cx="{x(i):.1f}" cy="{y(v):.1f}" r="3" fill="{colour}">'
            f"{_hover(days[i], one, v)}</circle>"
            for i, v in enumerate(one.values)
        ]
    return parts
