"""Raw landing through the real client and simulator into DuckDB: replace, retain, quarantine."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import duckdb
import orjson
import pytest

from oe_assets.client import OeClient, OeClientConfig
from oe_assets.landing.raw_catalog import RAW_TEMPLATES, land_catalog
from oe_assets.landing.raw_contexts import land_process_contexts
from oe_assets.secret import Secret
from oe_assets.simulator import SimulatorServer
from oe_assets.timestamps import utc_now
from oe_assets_tests.helpers import created_day, doc_hash


@pytest.fixture
def client(simulator: SimulatorServer) -> Iterator[OeClient]:
    config = OeClientConfig(
        api_url=simulator.url,
        auth_url=simulator.url,
        client_id=simulator.client_id,
        client_secret=Secret(simulator.client_secret),
        page_size=20,
    )
    with OeClient(config) as oe:
        yield oe


def test_a_day_is_replaced_exactly_and_other_days_are_untouched(
    simulator: SimulatorServer, client: OeClient, warehouse_path: Path
) -> None:
    contexts = simulator.world.contexts()
    days = sorted({created_day(c) for c in contexts})
    template_ids = [t["id"] for t in simulator.world.templates()]
    conn = duckdb.connect(str(warehouse_path))
    report = land_process_contexts(conn, client, template_ids, days)
    assert report.rows == len(contexts)
    assert report.api_pages > 0
    first = _landed_conn(conn)
    assert first == {c["context"]["processid"]: doc_hash(c) for c in contexts}

    # The run goes on: one context of day 0 changes, one disappears from the API; day 1 is not refreshed.
    day0 = [c for c in contexts if created_day(c) == days[0]]
    # a context whose status really changes (the simulated world differs from day to day)
    original = next(c for c in day0 if c["status"] != "failed")
    changed = copy.deepcopy(original)
    gone = next(c for c in day0 if c is not original)
    changed["status"] = "failed"
    simulator.world.put_context(changed)
    simulator.world.delete_context(gone["context"]["processid"])
    other_day = {c["context"]["processid"]: doc_hash(c) for c in contexts if created_day(c) == days[1]}
    report = land_process_contexts(conn, client, template_ids, [days[0]])
    after = _landed_conn(conn)
    assert report.rows_per_partition == {days[0].isoformat(): len(day0) - 1}
    assert after[changed["context"]["processid"]] == doc_hash(changed)
    assert gone["context"]["processid"] not in after
    assert {k: v for k, v in after.items() if k in other_day} == other_day
    history = conn.execute(
        "SELECT status FROM raw_process_context_status_history WHERE process_id = ? ORDER BY observed_at",
        [changed["context"]["processid"]],
    ).fetchall()
    assert [h[0] for h in history] == [original["status"], "failed"]

    # Idempotent: the same refresh again changes nothing.
    land_process_contexts(conn, client, template_ids, [days[0]])
    assert _landed_conn(conn) == after
    conn.close()


def _landed_conn(conn: duckdb.DuckDBPyConnection) -> dict[str, str]:
    rows = conn.execute("SELECT process_id, document FROM raw_process_contexts").fetchall()
    return {pid: doc_hash(orjson.loads(doc)) for pid, doc in rows}


def test_contexts_of_a_deleted_digital_process_stay_landed(
    simulator: SimulatorServer, client: OeClient, warehouse_path: Path
) -> None:
    days = sorted({created_day(c) for c in simulator.world.contexts()})
    templates = [t["id"] for t in simulator.world.templates() if simulator.world.contexts(t["id"])]
    victim = templates[0]
    kept = {c["context"]["processid"] for c in simulator.world.contexts(victim)}
    conn = duckdb.connect(str(warehouse_path))
    land_process_contexts(conn, client, templates, days)
    land_catalog(conn, RAW_TEMPLATES, client.list_execution_templates(), utc_now())

    simulator.world.delete_template(victim)  # OE deletes the contexts of a deleted digital process
    remaining = [t["id"] for t in client.list_execution_templates()]
    assert victim not in remaining
    land_process_contexts(conn, client, remaining, days)
    land_catalog(conn, RAW_TEMPLATES, client.list_execution_templates(), utc_now())

    landed = {r[0] for r in conn.execute("SELECT process_id FROM raw_process_contexts").fetchall()}
    assert kept <= landed
    row = conn.execute(f"SELECT present_in_api FROM {RAW_TEMPLATES} WHERE id = ?", [victim]).fetchone()
    assert row == (False,)
    conn.close()


def test_bad_records_are_quarantined_with_a_reason_and_good_ones_land(
    simulator: SimulatorServer, client: OeClient, warehouse_path: Path
) -> None:
    good = simulator.world.contexts()[0]
    day = created_day(good)
    no_id = copy.deepcopy(good)
    del no_id["context"]["processid"]
    bad_time = copy.deepcopy(good)
    bad_time["context"]["processid"] = good["context"]["processid"][:-3] + "BAD"
    bad_time["metadata"]["createdAt"] = good["metadata"]["createdAt"]
    bad_time["metadata"]["updatedAt"] = "yesterday-ish"
    simulator.world.put_context(no_id, template_id=good["context"]["executionTemplateID"])
    simulator.world.put_context(bad_time)
    conn = duckdb.connect(str(warehouse_path))
    report = land_process_contexts(conn, client, [good["context"]["executionTemplateID"]], [day])
    reasons = {q.reason for q in report.quarantined}
    assert "context.processid is missing or not a non-empty string" in reasons
    quarantine = conn.execute(
        "SELECT partition_key, reason, document FROM _oe_quarantine WHERE family = 'raw_process_contexts'"
    ).fetchall()
    assert [(q[0], q[1]) for q in quarantine] == [
        (day.isoformat(), "context.processid is missing or not a non-empty string")
    ]
    assert orjson.loads(quarantine[0][2]) == no_id
    landed = {r[0] for r in conn.execute("SELECT process_id FROM raw_process_contexts").fetchall()}
    assert good["context"]["processid"] in landed
    # A record whose updatedAt is not a timestamp is kept (its createdAt places it), with a NULL updated_at.
    assert conn.execute(
        "SELECT updated_at FROM raw_process_contexts WHERE process_id = ?", [bad_time["context"]["processid"]]
    ).fetchone() == (None,)
    conn.close()
