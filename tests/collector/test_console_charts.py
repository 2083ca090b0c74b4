"""The console's SVG charts: pure functions, read back as XML."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from telemd.collector.console import charts

SVG = "{http://www.w3.org/2000/svg}"


def parse(markup: str) -> ET.Element:
    return ET.fromstring(str(markup))


def test_stacked_bars_stack_each_day_to_its_total() -> None:
    series = {"hello": [3, 0, 5], "crash": [1, 2, 0]}
    root = parse(charts.stacked_bars(["a", "b", "c"], series, "per day"))
    rects = root.findall(f"{SVG}rect")
    assert len(rects) == 4  # zero counts draw nothing
    top = charts._nice_top(5)
    plot_h = charts.HEIGHT - charts.TOP - charts.BOTTOM
    heights = [float(r.get("height", "0")) for r in rects]
    assert sum(heights[:2]) == pytest.approx(plot_h * 4 / top, abs=0.2)
    assert heights[3] == pytest.approx(plot_h * 5 / top, abs=0.2)


@pytest.mark.parametrize(
    ("value", "top"), [(0, 1), (1, 1), (7, 10), (11, 20), (199, 200), (201, 500), (10**6, 10**6)]
)
def test_axis_tops_are_round(value: float, top: float) -> None:
    assert charts._nice_top(value) == top


def test_labels_and_titles_are_escaped() -> None:
    evil = '<script>alert(1)</script>"&'
    for markup in (
        charts.stacked_bars([evil], {evil: [1]}, evil),
        charts.lines([evil], {evil: [1.0]}, evil),
        charts.bars([evil], [2.0], evil),
        charts.sparkline([1, 2], evil),
        charts.legend([evil]),
    ):
        assert "<script>" not in str(markup)
        parse(f"<div>{markup}</div>")  # well-formed


def test_empty_and_flat_series_draw_without_dividing_by_zero() -> None:
    for markup in (
        charts.stacked_bars([], {}, "none"),
        charts.lines(["a"], {"m": [0]}, "flat"),
        charts.bars([], [], "none"),
        charts.sparkline([], "none"),
        charts.sparkline([0, 0, 0], "zeros"),
    ):
        assert parse(markup).tag == f"{SVG}svg"


def test_lines_put_the_largest_value_highest() -> None:
    root = parse(charts.lines(["a", "b", "c"], {"m": [1, 9, 4]}, "machines"))
    points = root.find(f"{SVG}polyline").get("points", "").split()  # type: ignore[union-attr]
    ys = [float(p.split(",")[1]) for p in points]
    assert ys.index(min(ys)) == 1
