"""SVG charts: well-formed, escaped, scaled, and with the same figures as their tables."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from hub.incidents.charts import _nice_max, bar_svg, months_between, stacked_chart

SVG = "{http://www.w3.org/2000/svg}"


def test_an_empty_chart_is_valid_svg_that_says_so():
    svg = bar_svg("c", "Alarms", "Nothing happened.", [], [])
    root = ET.fromstring(svg)
    assert root.get("role") == "img" and root.get("aria-labelledby") == "c-t c-d"
    assert root.find(f"{SVG}title").text == "Alarms"
    assert "No data in this period" in svg and root.findall(f"{SVG}rect") == []


def test_bars_stack_to_scale_and_text_is_escaped():
    chart = stacked_chart("c", "A <b> & c", "s", ["2024-01", "2024-02"],
                          [("Emergency", [3, 0]), ("<script>", [1, 5])],
                          category_header="Month")
    root = ET.fromstring(chart.svg)  # parses: every text escaped
    bars = [r for r in root.findall(f"{SVG}rect") if r.find(f"{SVG}title") is not None]
    assert [b.find(f"{SVG}title").text for b in bars] == [
        "2024-01, Emergency: 3", "2024-01, <script>: 1", "2024-02, <script>: 5"]
    heights = [float(b.get("height")) for b in bars]
    plot_h = 260 - 16 - 56
    assert heights == [plot_h * 3 / 5, plot_h * 1 / 5, plot_h * 5 / 5]  # axis top: 5
    assert "<script>" not in chart.svg
    assert chart.headers == ("Month", "Emergency", "<script>", "Total")
    assert chart.rows == (("2024-01", "3", "1", "4"), ("2024-02", "0", "5", "5"))


def test_axis_maxima_are_round():
    assert [_nice_max(v) for v in (0, 1, 3, 7, 11, 240)] == [1, 1, 5, 10, 20, 500]


def test_months_between_spans_years():
    jan_2024 = 1_704_067_200_000
    assert months_between(jan_2024 - 40 * 86_400_000, jan_2024 + 35 * 86_400_000) == \
        ["2023-11", "2023-12", "2024-01", "2024-02"]
