"""The process map: the activity log's directly-follows graph, drawn as an SVG file.

An edge ``a → b`` counts how often activity ``b`` comes right after ``a`` within one case (the
activity log ordered by time, then ``sort_order``, then name, as the KPIs' variants); a node counts
the activity's rows. The picture is drawn here, in Python, with a simple layered layout, so it
needs no Graphviz and looks the same everywhere: activities are ranked by their average position
in the cases, each is placed one layer below the furthest activity that leads to it by a forward
edge, and edges that go back (loops, rework) curve round the right-hand side. Every node and edge
carries its name and count as ``data-*`` attributes, so the file can be checked by a program too.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import duckdb
import polars as pl

from oe_assets.process_mining.activity_log import ACTIVITY_LOG
from oe_assets.warehouse.reading import polars_frame

PROCESS_MAP_FILE = "process_map.svg"
_CHAR_W, _NODE_H, _LAYER_GAP, _NODE_GAP, _MARGIN = 7.2, 34, 96, 28, 40
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


@dataclass(frozen=True)
class Graph:
    nodes: dict[str, int]  # activity -> rows
    edges: list[tuple[str, str, int]]  # (from, to, times directly followed)
    rank: dict[str, float]  # activity -> average position in its cases


def read_graph(conn: duckdb.DuckDBPyConnection) -> Graph:
    """The whole activity log's directly-follows graph, computed with polars over Arrow (empty
    before the activity log has been built)."""
    found = conn.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'main' AND table_name = ?",
        [ACTIVITY_LOG],
    ).fetchone()
    if not found or not found[0]:
        return Graph(nodes={}, edges=[], rank={})
    log = polars_frame(conn, f"SELECT case_id, activity, event_time, sort_order FROM {ACTIVITY_LOG}")
    return directly_follows(log)


def directly_follows(log: pl.DataFrame) -> Graph:
    """Nodes, edges and ranks of a log with columns case_id, activity, event_time, sort_order."""
    ordered = log.sort(["case_id", "event_time", "sort_order", "activity"]).with_columns(
        pl.col("activity").shift(-1).over("case_id").alias("next"),
        pl.int_range(pl.len()).over("case_id").alias("position"),
    )
    nodes = ordered.group_by("activity").agg(pl.len().alias("n"), pl.col("position").mean().alias("rank"))
    edges = ordered.filter(pl.col("next").is_not_null()).group_by("activity", "next").len("n")
    return Graph(
        nodes={str(a): int(n) for a, n in nodes.select("activity", "n").iter_rows()},
        edges=sorted((str(a), str(b), int(n)) for a, b, n in edges.iter_rows()),
        rank={str(a): float(r) for a, r in nodes.select("activity", "rank").iter_rows()},
    )


def layers(graph: Graph) -> list[list[str]]:
    """Activities by layer: one below the furthest predecessor along forward edges."""
    order = sorted(graph.nodes, key=lambda a: (graph.rank[a], a))
    index = {a: i for i, a in enumerate(order)}
    layer: dict[str, int] = {}
    for activity in order:  # forward edges go from a lower index, already placed
        preds = [layer[a] + 1 for a, b, _ in graph.edges if b == activity and index[a] < index[b]]
        layer[activity] = max(preds, default=0)
    result: list[list[str]] = [[] for _ in range(max(layer.values(), default=-1) + 1)]
    for activity in order:
        result[layer[activity]].append(activity)
    return result


def _text(value: str) -> str:
    return _NOT_XML.sub("?", value)


def render_svg(graph: Graph) -> str:
    """The SVG document of the graph (see the module's docstring for the layout)."""
    rows = layers(graph)
    width_of = {a: len(f"{a} ({n})") * _CHAR_W + 24 for a, n in graph.nodes.items()}
    row_w = [sum(width_of[a] for a in row) + _NODE_GAP * (len(row) - 1) for row in rows] or [0.0]
    canvas_w = max(row_w) + 2 * _MARGIN + 160
    boxes: dict[str, tuple[float, float, float]] = {}  # activity -> (x, y, width)
    for i, row in enumerate(rows):
        x = _MARGIN + (max(row_w) - row_w[i]) / 2
        for activity in row:
            boxes[activity] = (x, _MARGIN + i * (_NODE_H + _LAYER_GAP), width_of[activity])
            x += width_of[activity] + _NODE_GAP
    canvas_h = 2 * _MARGIN + len(rows) * (_NODE_H + _LAYER_GAP)
    top = max((n for _, _, n in graph.edges), default=1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{canvas_w:.0f}" height="{canvas_h:.0f}" '
        f'viewBox="0 0 {canvas_w:.0f} {canvas_h:.0f}" font-family="sans-serif" font-size="12">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="9" markerHeight="9" '
        'markerUnits="userSpaceOnUse" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>',
        f'<rect width="100%" height="100%" fill="white"/><title>{len(graph.nodes)} activities, '
        f"{len(graph.edges)} directly-follows edges</title>",
    ]
    parts += [_edge_svg(a, b, n, boxes, top) for a, b, n in graph.edges]
    parts += [_node_svg(a, graph.nodes[a], boxes[a]) for a in boxes]
    return "\n".join([*parts, "</svg>"]) + "\n"


def _edge_svg(a: str, b: str, n: int, boxes: dict[str, tuple[float, float, float]], top: int) -> str:
    """A forward edge drops from the bottom of ``a`` to the top of ``b``; any other curves right."""
    (ax, ay, aw), (bx, by, bw) = boxes[a], boxes[b]
    if by > ay:
        x1, y1, x2, y2 = ax + aw / 2, ay + _NODE_H, bx + bw / 2, by
        mid = (y1 + y2) / 2
        path = f"M{x1:.1f},{y1:.1f} C{x1:.1f},{mid:.1f} {x2:.1f},{mid:.1f} {x2:.1f},{y2:.1f}"
        lx, ly = (x1 + x2) / 2 + 4, mid
    else:
        x1, y1, x2, y2 = ax + aw, ay + _NODE_H / 2 - 5, bx + bw, by + _NODE_H / 2 + 5
        bend = max(x1, x2) + 40 + 0.25 * abs(y1 - y2)
        path = f"M{x1:.1f},{y1:.1f} C{bend:.1f},{y1:.1f} {bend:.1f},{y2:.1f} {x2:.1f},{y2:.1f}"
        lx, ly = bend - 8, (y1 + y2) / 2
    stroke = 1 + 4 * n / top
    return (
        f'<g class="edge" data-source={quoteattr(_text(a))} data-target={quoteattr(_text(b))} data-count="{n}">'
        f'<path d="{path}" fill="none" stroke="#555" stroke-opacity="0.7" stroke-width="{stroke:.1f}" '
        f'marker-end="url(#arrow)"/><text x="{lx:.1f}" y="{ly:.1f}" fill="#333">{n}</text></g>'
    )


def _node_svg(activity: str, n: int, box: tuple[float, float, float]) -> str:
    x, y, w = box
    label = escape(_text(f"{activity} ({n})"))
    return (
        f'<g class="node" data-activity={quoteattr(_text(activity))} data-count="{n}">'
        f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{_NODE_H}" rx="6" fill="#e8f0fe" stroke="#1a73e8"/>'
        f'<text x="{x + w / 2:.1f}" y="{y + _NODE_H / 2 + 4:.1f}" text-anchor="middle">{label}</text></g>'
    )


def write_process_map(conn: duckdb.DuckDBPyConnection, folder: Path) -> tuple[Path, Graph]:
    """Draw the whole activity log's map into ``folder``; written to a side file, then renamed,
    so a reader never sees half a picture."""
    graph = read_graph(conn)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / PROCESS_MAP_FILE
    scratch = target.with_suffix(".svg.tmp")
    scratch.write_text(render_svg(graph), encoding="utf-8")
    scratch.replace(target)
    return target, graph


def edge_table(graph: Graph, limit: int = 20) -> Sequence[tuple[str, str, int]]:
    """The most frequent edges first, for the asset's page."""
    return sorted(graph.edges, key=lambda e: (-e[2], e[0], e[1]))[:limit]
