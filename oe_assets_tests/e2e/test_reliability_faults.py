"""Faults from the API, over real HTTP: nothing lost, nothing duplicated, or a clear failure.

For each fault kind of the simulator, and for all of them at once:

1. a full load (catalog, then every day as one run) with the faults switched on after the world
   is built; the warehouse must then hold exactly the simulator's contexts: same ids, same
   content (a hash of each document), no duplicates in the raw layer, execution_context or the
   event log;
2. the world moves on (runs finish, new ones start) and the finished-runs sensor refreshes the
   warehouse, still under the faults: every partition it asked for holds exactly the simulator's
   contexts of that day, and every finished context is landed with its current content.

``mutate_while_paging`` creates, updates and deletes contexts while the client pages, so "exactly
the simulator's contexts" cannot hold at the end of a run that the world kept changing under
(a context deleted after it was read is still landed). Under it the suite checks that every
context left untouched during the run is landed exactly and nothing is duplicated, then stops
the mutation (the other faults stay on) and refreshes once more: the contexts not marked
deleted in the raw layer, execution_context and the event log are then exactly the simulator's,
and the ones OE deleted after they were landed stay in all three, marked deleted (what was
landed stays landed; see
``test_a_context_deleted_in_oe_after_landing_stays_everywhere_marked_deleted``).

The full loads of single fault kinds use the project's assets without their checks (see
reliability_support); the all-at-once load is ``run_whole_graph`` with every check.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import orjson
import pytest

from oe_assets.client.errors import OeRetryBudgetExceeded
from oe_assets.orchestration.runner import run_whole_graph
from oe_assets.simulator import SimulatorServer
from oe_assets.simulator.faults import FaultSwitches
from oe_assets_tests.support.helpers import created_day, doc_hash
from oe_assets_tests.support.reliability_support import (
    FIGURES,
    LIGHT_CONTEXTS_JOB,
    compare_with_simulator,
    failure_text,
    landed_documents,
    light_definitions,
    light_full_load,
    new_simulator,
    resources_for,
    run_job,
    sensor_refresh,
    tick,
    warehouse_snapshot,
    world_days,
)

# Tokens die early (the token response still promises 14399 s) and every 25th data request is
# answered 401 with all tokens revoked (every 40th in the tokens-only case). A pipeline client
# lives for one asset step, often under a second, so in the tokens-only case every answer is
# delayed 0.1 s to make tokens die mid-step.
KINDS: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    # name: (switches, counters that must show the fault was injected)
    "429_retry_after": ({"rate_429": 0.25, "retry_after_seconds": 0.05}, ("rate_limited",)),
    "5xx_10_percent": ({"rate_5xx": 0.1}, ("server_error",)),
    "slow_near_timeout": ({"slow_rate": 0.15, "slow_seconds": 0.4}, ("slow",)),
    "tokens_expire_early_and_401": (
        {"token_ttl_seconds": 1, "revoke_tokens_every": 40, "slow_rate": 1.0, "slow_seconds": 0.1},
        ("revoked", "expired_token"),
    ),
    "dropped_connections": ({"drop_connection_rate": 0.1}, ("dropped",)),
    "mutation_while_paging": ({"mutate_while_paging": True}, ("mutated",)),
    "cut_json_pages": ({"corrupt_page_rate": 0.15}, ("corrupted",)),
}
# Every fault at once, at rates where eight failed attempts in a row (the client's limit) stay
# improbable; tokens live 2 s so that one never dies between its issue and its first use.
ALL_AT_ONCE: dict[str, Any] = {
    "rate_429": 0.1,
    "retry_after_seconds": 0.05,
    "rate_5xx": 0.1,
    "slow_rate": 0.1,
    "slow_seconds": 0.4,
    "token_ttl_seconds": 2,
    "revoke_tokens_every": 25,
    "drop_connection_rate": 0.05,
    "mutate_while_paging": True,
    "corrupt_page_rate": 0.1,
}
TIMEOUT_SECONDS = 0.5  # slow answers take 0.4 s of it


def _assert_exact(comparison: Any, what: str) -> None:
    assert comparison.exact, (
        f"{what}: lost {comparison.lost[:5]}, changed {comparison.changed[:5]}, "
        f"extra {comparison.extra[:5]}, duplicates {comparison.duplicates}, "
        f"wrongly marked deleted {comparison.wrongly_marked[:5]}, only in event_log {comparison.event_log_only[:5]}"
    )


def _assert_untouched_landed(
    warehouse: Path, before: list[dict], after: list[dict], days: list[date]
) -> None:
    """Under mutation: contexts unchanged during the run are landed exactly; nothing duplicated."""
    old = {c["context"]["processid"]: doc_hash(c) for c in before if created_day(c) in days}
    new = {c["context"]["processid"]: doc_hash(c) for c in after if created_day(c) in days}
    untouched = {pid: h for pid, h in new.items() if old.get(pid) == h}
    landed = landed_documents(warehouse)
    missing = sorted(pid for pid, h in untouched.items() if landed.get(pid) != h)
    FIGURES.records_checked += len(untouched)
    FIGURES.records_lost += len(missing)
    assert not missing, f"contexts untouched during the run but not landed exactly: {missing[:5]}"
    comparison = compare_with_simulator(warehouse, after, days, record=False)
    assert not any(comparison.duplicates.values()), comparison.duplicates


def _assert_finished_landed(warehouse: Path, contexts: list[dict]) -> int:
    finished = {c["context"]["processid"]: doc_hash(c) for c in contexts if c["status"] == "finished"}
    landed = landed_documents(warehouse)
    wrong = sorted(pid for pid, h in finished.items() if landed.get(pid) != h)
    FIGURES.records_checked += len(finished)
    FIGURES.records_lost += len(wrong)
    assert not wrong, f"finished contexts not landed with their current content: {wrong[:5]}"
    return len(finished)


def _scenario(
    name: str,
    switches: dict[str, Any],
    must_inject: tuple[str, ...],
    tmp_path: Path,
    seed: int,
    *,
    whole_graph: bool = False,
) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    mutating = bool(switches.get("mutate_while_paging"))
    with new_simulator(seed) as server, dg.DagsterInstance.ephemeral() as instance:
        defs = light_definitions(resources_for(server, warehouse, timeout_seconds=TIMEOUT_SECONDS))
        days = world_days(server)
        server.faults.update({"seed": seed, **switches})

        # 1. a full load under the faults
        before = server.world.contexts()
        if whole_graph:
            report = run_whole_graph(defs, days[0], days[-1], instance=instance)
            FIGURES.runs += len(report.run_ids)
            assert report.success, report.failure
            assert report.checks, "the whole graph runs its checks"
            assert [c for c in report.checks if not c.passed] == []
        else:
            for result in light_full_load(defs, instance, days):
                assert result.success, failure_text(result)
        if mutating:
            _assert_untouched_landed(warehouse, before, server.world.contexts(), days)
        else:
            _assert_exact(
                compare_with_simulator(warehouse, server.world.contexts(), days), f"{name} full load"
            )
        load_faults = server.faults.counters()

        # 2. the world moves on; the sensor refreshes the days whose runs finished, under the faults
        finished = server.advance(12 * 3600).finished
        assert finished, "twelve simulated hours must finish some runs"
        before = server.world.contexts()
        # under mutation every poll changes the world, so the sensor never falls quiet: one round
        requested, _ = sensor_refresh(defs, instance, max_ticks=2 if mutating else 3)
        assert requested, "the sensor must ask for the days whose runs finished"
        after = server.world.contexts()
        if mutating:
            _assert_untouched_landed(
                warehouse, before, after, sorted(date.fromisoformat(d) for d in requested)
            )
        else:
            for day in sorted(requested):
                _assert_exact(
                    compare_with_simulator(warehouse, after, [date.fromisoformat(day)]),
                    f"{name} sensor refresh of {day}",
                )
            _assert_finished_landed(warehouse, after)
        counters = server.faults.counters()
        FIGURES.add_faults(counters)
        for counter in must_inject:
            assert counters[counter] > 0, f"{name}: no {counter} fault was injected ({counters})"

        # 3. mutation: once the world holds still, one more refresh makes the warehouse exact
        kept_marked: list[str] = []
        if mutating:
            server.faults.update({"mutate_while_paging": False})
            for result in light_full_load(defs, instance, days):
                assert result.success, failure_text(result)
            final = compare_with_simulator(warehouse, server.world.contexts(), days)
            _assert_exact(final, f"{name} after a quiet refresh")
            kept_marked = final.marked_deleted  # deleted in OE after they were landed: kept, marked
            FIGURES.add_faults({k: v - counters[k] for k, v in server.faults.counters().items()})
        FIGURES.scenario(
            f"faults:{name}",
            contexts=len(server.world.contexts()),
            partitions_loaded=len(days),
            partitions_refreshed_by_sensor=len(requested),
            faults_in_full_load={k: v for k, v in load_faults.items() if v},
            faults_total={k: v for k, v in counters.items() if v},
            deleted_in_oe_kept_marked=len(kept_marked),
        )


@pytest.mark.slow
@pytest.mark.parametrize(("name", "seed"), [(name, 100 + i) for i, name in enumerate(KINDS)])
def test_full_load_and_sensor_refresh_under_one_fault_kind(name: str, seed: int, tmp_path: Path) -> None:
    switches, must_inject = KINDS[name]
    _scenario(name, switches, must_inject, tmp_path, seed)


@pytest.mark.slow
def test_whole_graph_and_sensor_refresh_under_all_faults_at_once(tmp_path: Path) -> None:
    must_inject = tuple(c for _, counters in KINDS.values() for c in counters if c != "expired_token")
    _scenario("all_at_once", ALL_AT_ONCE, must_inject, tmp_path, 131, whole_graph=True)


def test_a_context_deleted_in_oe_after_landing_stays_everywhere_marked_deleted(tmp_path: Path) -> None:
    from oe_assets.model.data_model import build_data_model
    from oe_assets.model.declaration import MODEL
    from oe_assets.model.integrity import check_relation

    warehouse = tmp_path / "warehouse.duckdb"
    with new_simulator(160, days=1) as server, dg.DagsterInstance.ephemeral() as instance:
        defs = light_definitions(resources_for(server, warehouse))
        days = world_days(server)
        for result in light_full_load(defs, instance, days):
            assert result.success, failure_text(result)
        gone = server.world.contexts()[0]
        assert server.world.delete_context(gone["context"]["processid"])
        result = run_job(defs, instance, LIGHT_CONTEXTS_JOB, partition_key=created_day(gone).isoformat())
        assert result.success, failure_text(result)
        comparison = compare_with_simulator(warehouse, server.world.contexts(), days)
    _assert_exact(comparison, "after OE deleted a landed context")
    assert comparison.marked_deleted == [gone["context"]["processid"]]
    relation = next(r for r in build_data_model(MODEL).relations if r.name == "event_log_instance_to_context")
    conn = duckdb.connect(str(warehouse), read_only=True)
    try:
        outcome = check_relation(conn, relation)
    finally:
        conn.close()
    assert outcome.passed, outcome.detail


def test_api_down_past_the_retry_budget_fails_clearly_and_changes_nothing(tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    with new_simulator(140) as server, dg.DagsterInstance.ephemeral() as instance:
        defs = light_definitions(resources_for(server, warehouse, retry_budget_seconds=2.0))
        days = world_days(server)
        for result in light_full_load(defs, instance, days):
            assert result.success, failure_text(result)
        cursor = sensor_refresh(defs, instance)[1]
        server.advance(12 * 3600)  # a successful refresh would now change the warehouse
        before = warehouse_snapshot(warehouse)
        server.faults.update({"rate_5xx": 1.0})

        report = run_whole_graph(defs, days[0], days[-1], instance=instance)
        assert not report.success
        assert report.failure is not None
        assert "kept failing (HTTP 5" in report.failure, report.failure
        assert "the run stops and the warehouse is unchanged. Check OE_API_URL" in report.failure
        assert warehouse_snapshot(warehouse) == before

        result = run_job(defs, instance, LIGHT_CONTEXTS_JOB, days=days)
        assert not result.success
        assert "OeRetryBudgetExceeded" in failure_text(result) or "kept failing" in failure_text(result)
        assert warehouse_snapshot(warehouse) == before

        with pytest.raises(OeRetryBudgetExceeded, match="kept failing"):
            tick(defs, instance, cursor)
        down_faults = server.faults.counters()

        # the API comes back: the sensor, from the cursor it kept, catches up with nothing lost
        server.faults.reset()
        requested, _ = sensor_refresh(defs, instance, cursor=cursor)
        assert requested
        _assert_finished_landed(warehouse, server.world.contexts())
    FIGURES.add_faults(down_faults)
    FIGURES.scenario("api_down_past_retry_budget", faults=dict(down_faults), warehouse_unchanged=True)


def test_pages_that_never_parse_fail_the_run_naming_the_request(tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    with new_simulator(150) as server, dg.DagsterInstance.ephemeral() as instance:
        defs = light_definitions(resources_for(server, warehouse, retry_budget_seconds=2.0))
        days = world_days(server)
        for result in light_full_load(defs, instance, days):
            assert result.success, failure_text(result)
        server.advance(4 * 3600)
        before = warehouse_snapshot(warehouse)
        server.faults.update({"corrupt_page_rate": 1.0})
        result = run_job(defs, instance, LIGHT_CONTEXTS_JOB, days=days)
        assert not result.success
        text = failure_text(result)
        assert "/process-contexts (page 1) with a body that is not JSON" in text, text
        assert "check OE_API_URL" in text
        assert warehouse_snapshot(warehouse) == before
        counters = server.faults.counters()
    assert counters["corrupted"] >= 2  # the page was asked for again before the run gave up
    FIGURES.add_faults(counters)
    FIGURES.scenario("pages_never_parse", faults=dict(counters), warehouse_unchanged=True)


# ---------------------------------------------------------------------- the new simulator fault
def test_corrupt_page_rate_cuts_process_context_pages_only() -> None:
    import httpx

    with SimulatorServer(seed=3, days=1, contexts_per_day=10) as server:
        token = httpx.post(
            f"{server.url}/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": server.client_id,
                "client_secret": server.client_secret,
            },
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        template = server.world.templates()[0]["id"]
        url = f"{server.url}/oe/execution-templates/{template}/process-contexts"
        assert isinstance(orjson.loads(httpx.get(url, headers=headers).content), list)
        server.faults.update({"corrupt_page_rate": 1.0})
        cut = httpx.get(url, headers=headers)
        assert cut.status_code == 200
        assert len(cut.content) == int(cut.headers["Content-Length"])
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(cut.content)
        listing = httpx.get(f"{server.url}/oe/execution-templates", headers=headers)
        assert isinstance(orjson.loads(listing.content), list)  # catalog lists are not cut
        assert server.faults.counters()["corrupted"] == 1
    with pytest.raises(ValueError, match="corrupt_page_rate"):
        FaultSwitches.from_dict({"corrupt_page_rate": 2})
    # its own rng: turning it on does not move the other faults' random sequence
    plain, cut_too = (
        FaultSwitches(rate_5xx=0.5, seed=9),
        FaultSwitches(rate_5xx=0.5, corrupt_page_rate=0.5, seed=9),
    )
    for _ in range(50):
        cut_too.corrupts_page()
        assert plain.draw() == cut_too.draw()


# ------------------------------------------------------------- the client's side of these faults
def test_a_page_that_does_not_parse_is_asked_for_again_and_nothing_is_lost() -> None:
    import httpx

    from oe_assets_tests.unit.test_client_unit import FakeApi, client_for, pids, read_all, spread_contexts

    api = FakeApi()
    docs = spread_contexts(25)
    api.add(*docs)
    cuts = iter([True, True, False, False, True])

    def cut_some(request: httpx.Request) -> httpx.Response | None:
        if "process-contexts" not in request.url.path or not next(cuts, False):
            return None
        body = orjson.dumps(api.select(request.url.params)[:10])
        return httpx.Response(
            200, content=body[: len(body) // 2], headers={"Content-Type": "application/json"}
        )

    api.before_data.append(cut_some)
    with client_for(api, page_size=10) as client:
        assert pids(read_all(client)) == pids(docs)
        assert client.stats.retries_by_reason == {"invalid JSON": 3}


def test_a_fresh_token_revoked_before_its_first_use_is_renewed_once_tokens_have_worked() -> None:
    import httpx

    from oe_assets_tests.unit.test_client_unit import FakeApi, client_for

    api = FakeApi()
    refusals = iter([True, True, False])

    def refuse(request: httpx.Request) -> httpx.Response | None:
        if next(refusals, False):
            return httpx.Response(401, json={"fault": {"faultstring": "Access Token expired"}})
        return None

    with client_for(api) as client:
        assert len(client.list_tenants()) == 5  # a token worked
        api.before_data.append(refuse)  # the next two answers revoke the token, the renewed one too
        assert len(client.list_tenants()) == 5
        assert len(api.tokens_issued) == 3
