"""deploy/grafana/model-server.json: a dashboard Grafana can import, whose every PromQL query
parses and names only metrics that a live /metrics serves.

A metric that the contract announces but the server does not serve yet is listed in PENDING,
the one place for it: the tests require it to be absent from /metrics, so the list must shrink
(and the check tighten) as soon as the server serves it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import promql_parser
import pytest
from live_server import REPO, copy_demo_store, start_server
from prometheus_client.parser import text_string_to_metric_families

DASHBOARD = REPO / "deploy" / "grafana" / "model-server.json"
GRID_COLUMNS = 24
# Announced by CONTRACT.md, not served yet: metric -> where it is announced.
PENDING: dict[str, str] = {}
# Grafana's own range variables, which PromQL does not know: any valid duration stands in.
GRAFANA_RANGES = re.compile(r"\$__(rate_interval|interval|range)\b")
LABEL_VALUES = re.compile(r"^label_values\((\w+),\s*(\w+)\)$")
SAMPLE_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "gauge": ("",),
}


def load() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def queries(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in panels(dashboard) for t in p.get("targets", [])]


def selected_metrics(expr: str) -> set[str]:
    """Every metric an expression selects, from its parsed syntax tree."""
    tree = promql_parser.parse(GRAFANA_RANGES.sub("5m", expr))
    names: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            assert node.name, f"a selector without a metric name in {expr!r}"
            names.add(node.name)

    promql_parser.walk(tree, visit)
    return names


def variable_metrics(dashboard: dict[str, Any]) -> set[str]:
    """The metrics that the template variables' label_values() queries read."""
    names = set()
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            match = LABEL_VALUES.match(text)
            assert match, f"variable {variable['name']}: {text!r}"
            names.add(match.group(1))
    return names


def dashboard_metrics() -> set[str]:
    dashboard = load()
    found = variable_metrics(dashboard)
    for expr in queries(dashboard):
        found |= selected_metrics(expr)
    return found


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Every sample name a live server's /metrics can carry, from its families' types (labelled
    families are described even before their first sample)."""
    root = tmp_path_factory.mktemp("grafana")
    with start_server(copy_demo_store(root / "store"), root) as server:
        text = httpx.get(server.url + "/metrics", timeout=10.0).text
    names = set()
    for family in text_string_to_metric_families(text):
        for suffix in SAMPLE_SUFFIXES[family.type]:
            names.add(family.name + suffix)
    return names


def test_every_query_names_only_served_or_pending_metrics(served: set[str]) -> None:
    unknown = dashboard_metrics() - served - PENDING.keys()
    assert not unknown, f"queried but neither served by /metrics nor pending: {sorted(unknown)}"


def test_pending_metrics_are_not_served_yet(served: set[str]) -> None:
    landed = PENDING.keys() & served
    assert not landed, f"now served: remove {sorted(landed)} from PENDING in this file"


def test_every_pending_metric_is_used() -> None:
    assert PENDING.keys() <= dashboard_metrics()


def test_every_served_metric_has_a_panel(served: set[str]) -> None:
    families = {name.removesuffix("_bucket") for name in served if name.endswith("_bucket")}
    families |= {n for n in served if not n.endswith(("_bucket", "_sum", "_count"))}
    queried = {name.removesuffix("_bucket") for name in dashboard_metrics()}
    assert families <= queried, f"no panel for {sorted(families - queried)}"


def test_every_query_parses() -> None:
    for expr in queries(load()):
        promql_parser.parse(GRAFANA_RANGES.sub("5m", expr))


def test_panels_are_importable_and_laid_out_without_overlap() -> None:
    dashboard = load()
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"

    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    taken: set[tuple[int, int]] = set()
    for panel in panels(dashboard):
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= GRID_COLUMNS, panel["title"]
        cells = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & taken, f"{panel['title']!r} overlaps another panel"
        taken |= cells
        if panel["type"] == "row":
            continue
        # Every query goes to the data source picked at import (no hard-coded uid).
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        targets = panel["targets"]
        assert targets, panel["title"]
        ref_ids = [t["refId"] for t in targets]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        assert all(t["datasource"]["uid"] == "${datasource}" for t in targets), panel["title"]


def test_the_dashboard_file_is_stored_as_written() -> None:
    # Pretty-printed with a final newline: reviewable diffs when someone edits it in Grafana
    # and exports it again.
    text = Path(DASHBOARD).read_text()
    assert text == json.dumps(json.loads(text), indent=2) + "\n"
