"""Raw landing through the real client and simulator into DuckDB: upsert, retain and mark, quarantine."""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Any

import duckdb
import orjson

from oe_assets.client import OeClient, OeClientConfig
from oe_assets.config.secret import Secret
from oe_assets.core.timestamps import utc_now
from oe_assets.landing.raw_catalog import RAW_TEMPLATES, land_catalog
from oe_assets.landing.raw_contexts import land_process_contexts
from oe_assets.simulator import SimulatorServer
from oe_assets.simulator.world import ContextPage
from oe_assets_tests.support.helpers import created_day, doc_hash


def test_a_refresh_updates_a_day_keeps_what_vanished_marked_and_leaves_other_days_alone(
    simulator: SimulatorServer, oe_client: OeClient, warehouse_path: Path
) -> None:
    contexts = simulator.world.contexts()
    days = sorted({created_day(c) for c in contexts})
    template_ids = [t["id"] for t in simulator.world.templates()]
    conn = duckdb.connect(str(warehouse_path))
    report = land_process_contexts(conn, oe_client, template_ids, days)
    assert report.rows == len(contexts)
    assert report.stage.api_pages > 0
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
    report = land_process_contexts(conn, oe_client, template_ids, [days[0]])
    after = _landed_conn(conn)
    assert report.rows_per_partition == {days[0].isoformat(): len(day0) - 1}
    assert [(d.landed_before, d.returned_now, d.newly_missing) for d in report.retention] == [
        (len(day0), len(day0) - 1, 1)
    ]
    assert after[changed["context"]["processid"]] == doc_hash(changed)
    # what was landed stays landed: the vanished context keeps its document, marked deleted
    assert after[gone["context"]["processid"]] == first[gone["context"]["processid"]]
    marked = _marked(conn)
    assert set(marked) == {gone["context"]["processid"]}
    assert {k: v for k, v in after.items() if k in other_day} == other_day
    history = conn.execute(
        "SELECT status FROM raw_process_context_status_history WHERE process_id = ? ORDER BY observed_at",
        [changed["context"]["processid"]],
    ).fetchall()
    assert [h[0] for h in history] == [original["status"], "failed"]

    # Idempotent: the same refresh again changes nothing (the mark keeps when it was first missed).
    land_process_contexts(conn, oe_client, template_ids, [days[0]])
    assert _landed_conn(conn) == after
    assert _marked(conn) == marked

    # The context comes back: its mark is cleared.
    simulator.world.put_context(gone)
    land_process_contexts(conn, oe_client, template_ids, [days[0]])
    assert _marked(conn) == {}
    conn.close()


def _marked(conn: duckdb.DuckDBPyConnection) -> dict[str, object]:
    rows = conn.execute(
        "SELECT process_id, deleted_at FROM raw_process_contexts WHERE deleted_at IS NOT NULL"
    ).fetchall()
    return dict(rows)


def _landed_conn(conn: duckdb.DuckDBPyConnection) -> dict[str, str]:
    rows = conn.execute("SELECT process_id, document FROM raw_process_contexts").fetchall()
    return {pid: doc_hash(orjson.loads(doc)) for pid, doc in rows}


def test_contexts_of_a_deleted_digital_process_stay_landed(
    simulator: SimulatorServer, oe_client: OeClient, warehouse_path: Path
) -> None:
    days = sorted({created_day(c) for c in simulator.world.contexts()})
    templates = [t["id"] for t in simulator.world.templates() if simulator.world.contexts(t["id"])]
    victim = templates[0]
    kept = {c["context"]["processid"] for c in simulator.world.contexts(victim)}
    conn = duckdb.connect(str(warehouse_path))
    land_process_contexts(conn, oe_client, templates, days)
    land_catalog(conn, RAW_TEMPLATES, oe_client.list_execution_templates(), utc_now())

    simulator.world.delete_template(victim)  # OE deletes the contexts of a deleted digital process
    remaining = [t["id"] for t in oe_client.list_execution_templates()]
    assert victim not in remaining
    land_process_contexts(conn, oe_client, remaining, days)
    land_catalog(conn, RAW_TEMPLATES, oe_client.list_execution_templates(), utc_now())

    landed = {r[0] for r in conn.execute("SELECT process_id FROM raw_process_contexts").fetchall()}
    assert kept <= landed
    row = conn.execute(f"SELECT present_in_api FROM {RAW_TEMPLATES} WHERE id = ?", [victim]).fetchone()
    assert row == (False,)
    conn.close()


def test_bad_records_are_quarantined_with_a_reason_and_good_ones_land(
    simulator: SimulatorServer, oe_client: OeClient, warehouse_path: Path
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
    report = land_process_contexts(conn, oe_client, [good["context"]["executionTemplateID"]], [day])
    reasons = {q.reason for q in report.stage.quarantine_samples}
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


def _serve_instead(
    simulator: SimulatorServer, swaps: dict[bytes, bytes], extra: list[bytes] | None = None
) -> None:
    """The API answers with ``swaps[item]`` in place of a stored context's JSON text, and adds
    ``extra`` elements to the first page it serves (texts the simulator could not store)."""
    honest = simulator.world.page
    pending = list(extra or [])

    def page(template_id: str, **kwargs: Any) -> ContextPage:
        served = honest(template_id, **kwargs)
        items = [swaps.get(item, item) for item in served.items]
        if pending and kwargs.get("page_size", 0) > 1:
            items += pending
            pending.clear()
        return ContextPage(served.total, items)

    simulator.world.page = page  # type: ignore[method-assign]


def test_the_raw_layer_keeps_the_apis_text_byte_for_byte(
    simulator: SimulatorServer, oe_client: OeClient, warehouse_path: Path
) -> None:
    """Duplicate keys, an integer beyond 64 bits, escapes, spacing and nesting 300 deep (deeper
    than orjson writes) are stored as the API sent them, with the SHA-256 of that text."""
    base = copy.deepcopy(simulator.world.contexts()[0])
    base["context"]["x"] = "PLACEHOLDER"
    simulator.world.put_context(base)
    stored = orjson.dumps(base)
    crafted = stored.replace(
        b'"x":"PLACEHOLDER"',
        b'"dup":1,"dup":2, "big":  1180591620717411303424,"esc":"\\u00e9\\n\\"q\\"","deep":'
        + b"[" * 300
        + b"]" * 300,
    )
    assert crafted != stored
    _serve_instead(simulator, {stored: crafted})
    conn = duckdb.connect(str(warehouse_path))
    land_process_contexts(conn, oe_client, [base["context"]["executionTemplateID"]], [created_day(base)])
    row = conn.execute(
        "SELECT document, document_sha256, typeof(document) FROM raw_process_contexts WHERE process_id = ?",
        [base["context"]["processid"]],
    ).fetchone()
    conn.close()
    assert row is not None
    assert row[0].encode() == crafted
    assert row[1] == hashlib.sha256(crafted).hexdigest()
    assert row[2] == "JSON"


def test_unusable_elements_of_a_page_are_quarantined_with_their_text(
    simulator: SimulatorServer, oe_client: OeClient, warehouse_path: Path
) -> None:
    """A record with NaN goes to the quarantine on the day its createdAt names; an element that
    is no object, on the run's first day; the good records of the page land beside them."""
    contexts = simulator.world.contexts()
    days = sorted({created_day(c) for c in contexts})
    template = contexts[0]["context"]["executionTemplateID"]
    nan_text = (
        '{"metadata": {"createdAt": "' + days[1].isoformat() + 'T10:00:00.000Z"}, '
        '"context": {"processid": "P-NAN", "executionTemplateID": "' + template + '", "v": NaN}}'
    )
    _serve_instead(simulator, {}, [nan_text.encode(), b"42"])
    conn = duckdb.connect(str(warehouse_path))
    land_process_contexts(conn, oe_client, [template], days)
    quarantine = conn.execute(
        "SELECT partition_key, record_key, reason, document FROM _oe_quarantine "
        "WHERE family = 'raw_process_contexts' ORDER BY record_key NULLS LAST"
    ).fetchall()
    landed = {r[0] for r in conn.execute("SELECT process_id FROM raw_process_contexts").fetchall()}
    conn.close()
    assert [(q[0], q[1], q[3]) for q in quarantine] == [
        (days[1].isoformat(), "P-NAN", nan_text),
        (days[0].isoformat(), None, "42"),
    ]
    assert all(q[2] for q in quarantine)
    assert landed == {
        c["context"]["processid"] for c in contexts if c["context"]["executionTemplateID"] == template
    }


def test_digital_processes_and_accounts_land_as_the_apis_text_and_unusable_elements_are_quarantined(
    simulator: SimulatorServer, warehouse_path: Path
) -> None:
    from oe_assets.landing.raw_catalog import RAW_ACCOUNTS
    from oe_assets_tests.support.hostile_server import HostileServer, Reply, Request

    template = simulator.world.templates()[0]
    odd = (
        orjson.dumps(template).decode()[:-1] + ', "big": 123456789012345678901234567890, "dup": 1, "dup": 2}'
    )
    listed = f'[ {odd} , {{"name": "no id"}}, NaN ]'.encode()

    def lists(request: Request) -> Reply | None:
        return Reply(200, listed) if request.path == "/oe/execution-templates" else None

    with HostileServer(simulator.url, [lists]) as hostile:
        config = OeClientConfig(
            api_url=hostile.url,
            auth_url=hostile.url,
            client_id=simulator.client_id,
            client_secret=Secret(simulator.client_secret),
        )
        with OeClient(config) as oe, duckdb.connect(str(warehouse_path)) as conn:
            templates = land_catalog(conn, RAW_TEMPLATES, oe.list_execution_templates(), utc_now())
            accounts = land_catalog(conn, RAW_ACCOUNTS, oe.list_tenants(), utc_now())
            stored = conn.execute(f"SELECT id, document FROM {RAW_TEMPLATES}").fetchall()
            quarantined = conn.execute(
                "SELECT reason, document FROM _oe_quarantine WHERE family = ? ORDER BY reason",
                [RAW_TEMPLATES],
            ).fetchall()
            account_texts = {r[0] for r in conn.execute(f"SELECT document FROM {RAW_ACCOUNTS}").fetchall()}
    assert stored == [(template["id"], odd)]
    assert templates.rows_in_api == 1
    assert quarantined == [("id is missing or not a string", '{"name": "no id"}'), (quarantined[1][0], "NaN")]
    assert quarantined[1][0].startswith("not valid JSON")
    assert accounts.rows_in_api == len(simulator.world.tenants())
    assert account_texts == {orjson.dumps(t).decode() for t in simulator.world.tenants()}
