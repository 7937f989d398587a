"""The dashboard's SVG charts: well-formed XML, one mark per datum, labelled axes, and data
text escaped."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from learner import charts

NS = {"svg": "http://www.w3.org/2000/svg"}


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(str(svg))
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    return root


def texts(root: ET.Element) -> list[str]:
    return [t.text or "" for t in root.iterfind(".//svg:text", NS)]


def test_line_chart_has_a_point_per_datum_with_tooltips_axes_and_legend() -> None:
    series = [
        charts.Series("Macro-F1", [charts.Point(10, 0.4), charts.Point(40, 0.6),
                                   charts.Point(25, 0.5, "round 2")], key="macro_f1"),
        charts.Series("Accuracy", [charts.Point(10, 0.5), charts.Point(40, 0.7),
                                   charts.Point(25, 0.6)], key="accuracy"),
    ]
    root = parse(charts.line_chart(series, x_label="Labels", y_label="Score"))
    points = root.findall(".//svg:circle[@class='point']", NS)
    assert len(points) == 6
    assert len(root.findall(".//svg:circle[@data-series='macro_f1']", NS)) == 3
    assert [p.find("svg:title", NS).text for p in points][:3] == [
        "Macro-F1: 0.4 at 10", "round 2", "Macro-F1: 0.6 at 40"  # drawn in x order
    ]
    assert len(root.findall(".//svg:polyline", NS)) == 2
    words = texts(root)
    assert {"Labels", "Score", "Macro-F1", "Accuracy"} <= set(words)
    assert {"0", "0.2", "0.4", "0.6", "0.8", "1"} <= set(words)  # y ticks
    assert "40" in words  # the x axis reaches the last point


def test_line_chart_with_one_point_draws_no_line() -> None:
    root = parse(charts.line_chart([charts.Series("F1", [charts.Point(5, 0.5)])],
                                   x_label="x", y_label="y"))
    assert len(root.findall(".//svg:circle[@class='point']", NS)) == 1
    assert root.findall(".//svg:polyline", NS) == []


def test_bar_chart_has_a_bar_per_item_and_escapes_names() -> None:
    bars = [charts.Bar("<script>alert(1)</script>", 0.5), charts.Bar("sport & leisure", 0.9),
            charts.Bar("tech", 0.0)]
    svg = charts.bar_chart(bars, max_value=1.0, x_label="F1")
    assert "<script>" not in svg
    root = parse(svg)
    assert len(root.findall(".//svg:g[@class='bar']", NS)) == 3
    assert len(root.findall(".//svg:g[@class='bar']/svg:rect", NS)) == 3
    titles = [t.text for t in root.findall(".//svg:g[@class='bar']/svg:title", NS)]
    assert titles[1] == "sport & leisure: 0.9"
    assert "F1" in texts(root)


def test_heatmap_has_a_cell_per_entry_with_its_count() -> None:
    matrix = [[5, 1, 0], [2, 7, 1], [0, 0, 9]]
    names = ["business", "sport", "tech"]
    root = parse(charts.heatmap(matrix, names, names))
    cells = root.findall(".//svg:g[@class='cell']", NS)
    assert len(cells) == 9
    assert [c.find("svg:text", NS).text for c in cells] == [str(v) for r in matrix for v in r]
    assert cells[3].find("svg:title", NS).text == "true sport, predicted business: 2"
    assert {"Predicted", "True"} <= set(texts(root))


def test_histogram_draws_each_bin_and_checks_its_edges() -> None:
    counts = [0, 3, 10, 4, 1]
    edges = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    root = parse(charts.histogram(counts, edges, x_label="Confidence", y_label="Documents"))
    bins = root.findall(".//svg:rect[@class='bin']", NS)
    assert len(bins) == 5
    assert bins[2].find("svg:title", NS).text == "0.4–0.6: 10"
    heights = [float(b.get("height")) for b in bins]
    assert heights[2] == max(heights) and heights[0] == 0
    assert {"Confidence", "Documents"} <= set(texts(root))
    with pytest.raises(ValueError):
        charts.histogram([1, 2], [0.0, 1.0])


@pytest.mark.parametrize(("lo", "hi", "expected"), [
    (0, 1, [0, 0.2, 0.4, 0.6, 0.8, 1.0]),
    (0, 37, [0, 10, 20, 30, 40]),
    (0, 0, [0, 0.2, 0.4, 0.6, 0.8, 1.0]),
])
def test_nice_ticks_are_round_and_cover_the_range(lo: float, hi: float,
                                                  expected: list[float]) -> None:
    assert charts.nice_ticks(lo, hi, 5) == pytest.approx(expected)


def test_heatmap_writes_long_label_names_whole() -> None:
    names = ["entertainment & culture", "international politics", "tech"]
    matrix = [[3, 1, 0], [0, 4, 1], [1, 0, 5]]
    root = parse(charts.heatmap(matrix, names, names))
    for kind in ("row-label", "col-label"):
        groups = root.findall(f".//svg:g[@class='{kind}']", NS)
        assert [g.find("svg:text", NS).text for g in groups] == names
        assert [g.find("svg:title", NS).text for g in groups] == names
    # The margins made room: the chart is wider than the grid by more than the row names.
    assert float(root.get("width")) > 3 * 56 + len(names[0]) * 6


def test_heatmap_shortens_only_very_long_names_and_keeps_them_in_the_tooltip() -> None:
    long = "a label name far longer than anything a chart axis should carry whole"
    root = parse(charts.heatmap([[1, 0], [0, 1]], [long, "b"], [long, "b"]))
    group = root.find(".//svg:g[@class='row-label']", NS)
    assert group.find("svg:title", NS).text == long
    assert group.find("svg:text", NS).text.endswith("…")


def test_grouped_bars_draw_a_bar_per_category_and_series_with_escaped_names() -> None:
    root = parse(charts.grouped_bars(
        ["sport", "<tech>", "business"],
        [charts.BarSeries("Holdout", [0.5, 0.3, 0.2]),
         charts.BarSeries("2026-12-03", [0.1, 0.8, 0.1], charts.PALETTE[1])],
        title="Predicted labels", x_label="Predicted label"))
    bars = root.findall(".//svg:rect[@class='bar']", NS)
    assert len(bars) == 6
    assert len(root.findall(".//svg:rect[@data-series='Holdout']", NS)) == 3
    assert bars[3].find("svg:title", NS).text == "<tech>, 2026-12-03: 0.8"
    heights = [float(b.get("height")) for b in bars]
    assert heights[3] == max(heights) and heights[0] > heights[1]
    assert {"<tech>", "Holdout", "2026-12-03", "Predicted label"} <= set(texts(root))
