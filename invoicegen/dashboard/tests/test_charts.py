"""Charts drawn as SVG: bars and points where the values are, on a round axis, labelled."""

import datetime
import re

from invoicegen.dashboard.activity import Series
from invoicegen.dashboard.charts import HEIGHT, axis_step, daily_chart

DAYS = [datetime.date(2025, 1, 29) + datetime.timedelta(days=n) for n in range(3)]


def heights(svg: str, element: str = "rect", css_class: str = "bar") -> list[float]:
    return [
        float(h) for h in re.findall(rf'<{element} class="{css_class}"[^>]* height="([\d.]+)"', svg)
    ]


def test_the_axis_steps_are_round_and_at_least_one():
    assert [axis_step(peak) for peak in (0, 3, 7, 10, 48, 1234, 962_000)] == [
        1,
        1,
        2,
        2,
        10,
        500,
        200_000,
    ]


def test_stacked_bars_stand_on_each_other_and_reach_the_days_total():
    svg = daily_chart(
        "Downloads",
        DAYS,
        [Series("granted", [1, 0, 2]), Series("refused", [1, 0, 0])],
        stacked=True,
    )

    # The peak (2) tops the axis: each entry is half the plot's height, a day without any has
    # no bar.
    unit = heights(svg)[0]
    assert heights(svg) == [unit, 2 * unit, unit]
    assert 0 < 2 * unit < HEIGHT
    assert "<title>Jan 29, refused: 1</title>" in svg
    assert ">Jan 31</text>" in svg  # the newest day is labelled


def test_lines_have_a_point_per_day_and_series():
    svg = daily_chart(
        "Emails", DAYS, [Series("queued", [3, 1, 0]), Series("sent", [2, 1, 0])], stacked=False
    )

    assert svg.count('<circle class="point"') == 6
    assert svg.count("<polyline") == 2
    assert "<title>Jan 30, sent: 1</title>" in svg


def test_the_title_legend_and_axis_are_written_and_labels_escaped():
    svg = daily_chart("Entries <per> day", DAYS, [Series("a&b", [1500, 0, 0])], stacked=True)

    assert '<svg class="chart"' in svg
    assert "Entries &lt;per&gt; day</text>" in svg
    assert '<g class="legend-item">' in svg
    assert "a&amp;b</text>" in svg
    assert ">1,500</text>" in svg and ">0</text>" in svg
    assert "<per>" not in svg and "a&b" not in svg
