"""The console's pure parts: the SVG chart and the preview's field-by-field comparison."""

from __future__ import annotations

from producers.console import chart
from producers.console.preview import compare, flatten, other_writes


def test_chart_stacks_outcomes_per_minute_and_escapes_labels() -> None:
    minutes = [(1_800_000_000, {"created": 3, "rejected": 1}), (1_800_000_060, {}),
               (1_800_000_120, {"<odd>": 2})]
    svg = str(chart.render(chart.Series(minutes)))
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count("<rect") == 3  # created, rejected, the unknown outcome; none when empty
    assert chart.colour("created") in svg and chart.colour("rejected") in svg
    assert "&lt;odd&gt;" in svg and "<odd>" not in svg
    assert ">4<" in svg  # the y axis peak: the busiest minute's total
    assert chart.Series(minutes).outcomes == ["created", "rejected", "<odd>"]


def test_empty_chart_still_renders() -> None:
    svg = str(chart.render(chart.Series([])))
    assert "<svg" in svg and "<rect" not in svg


def test_flatten_names_nested_fields() -> None:
    assert flatten({"a": 1, "location": {"city": "Lyon", "zip": None}, "properties": {}}) == {
        "a": 1, "location.city": "Lyon", "location.zip": None, "properties": {}}


def test_compare_marks_what_would_change() -> None:
    report = {"writes": [
        {"operation": "create_or_update_profile", "body": {"data": {"attributes": {
            "email": "a@example.com", "first_name": "Bea", "location": {"city": "Lyon"},
            "phone_number": None}}}},
        {"operation": "update_profile", "body": {"data": {"attributes": {
            "location": {"zip": "69001"}}}}},
        {"operation": "add_profiles_to_list", "method": "POST", "path": "/api/lists/L/x"},
    ]}
    live = {"id": "P1", "attributes": {"email": "a@example.com", "first_name": "Ana",
                                       "location": {"city": "Lyon", "zip": 69001.0},
                                       "phone_number": ""}}
    rows = {r.field: r for r in compare(report, live)}
    assert set(rows) == {"email", "first_name", "location.city", "location.zip",
                         "phone_number"}
    assert rows["first_name"].differs and rows["first_name"].live == "Ana"
    assert not rows["email"].differs and not rows["location.city"].differs
    assert rows["location.zip"].differs  # "69001" is not the number 69001
    assert not rows["phone_number"].differs  # empty either way
    assert [r.live for r in compare(report, None)] == ["(not set)"] * 5
    assert [w["operation"] for w in other_writes(report)] == ["add_profiles_to_list"]
