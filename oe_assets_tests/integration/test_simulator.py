"""The OE simulator, exercised through real HTTP (httpx) against a server on a free port."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import httpx
import pytest

from oe_assets.core.timestamps import parse_timestamp
from oe_assets.simulator import AdvanceReport, FaultSwitches, SimulatorServer, World, iter_generated_contexts

NOW = datetime(2025, 3, 10, 12, 0, 0, tzinfo=UTC)
ULID_RE = re.compile(r"^[0-7][0-9A-HJKMNP-TV-Z]{25}$")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
TS_MS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
PC = "/oe/execution-templates/{}/process-contexts"


# ----------------------------------------------------------------------------- helpers


def credentials(
    client_id: str = "oe-demo-client",
    client_secret: str = "oe-demo-secret",  # noqa: S107 - the simulator's public demo credential
) -> dict[str, str]:
    """The token request's form (the simulator's demo credentials unless told otherwise)."""
    return {"grant_type": "client_credentials", "client_id": client_id, "client_secret": client_secret}


def token(sim: SimulatorServer, client: httpx.Client) -> str:
    r = client.post(f"{sim.url}/oauth/token", data=credentials(sim.client_id, sim.client_secret))
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


class Api:
    """A tiny authenticated caller for the tests."""

    def __init__(self, sim: SimulatorServer) -> None:
        self.sim = sim
        self.client = httpx.Client(base_url=sim.url, timeout=10)
        self.token = token(sim, self.client)

    def get(self, path: str, *, total: bool = False, **params: Any) -> httpx.Response:
        return self.query(path, params, total=total)

    def query(self, path: str, params: dict[str, Any], *, total: bool = False) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        if total:
            headers["X-Total-Count"] = "true"
        return self.client.get(path, params=params, headers=headers)

    def contexts(self, template_id: str, **params: Any) -> list[dict[str, Any]]:
        r = self.get(PC.format(template_id), **params)
        assert r.status_code == 200, r.text
        return list(r.json())

    def all_contexts(self, template_id: str, page_size: int = 100, **params: Any) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        page = 1
        while True:
            batch = self.contexts(template_id, pageNumber=page, pageSize=page_size, **params)
            out.extend(batch)
            if len(batch) < page_size:
                return out
            page += 1

    def close(self) -> None:
        self.client.close()


def busiest_template(sim: SimulatorServer) -> str:
    return max((t["id"] for t in sim.world.templates()), key=lambda tid: len(sim.world.contexts(tid)))


def created(doc: dict[str, Any]) -> str:
    return str(doc["metadata"]["createdAt"])


def pid(doc: dict[str, Any]) -> str:
    return str(doc["context"]["processid"])


def walk(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    yield path, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from walk(v, f"{path}.{k}")
    elif isinstance(value, list):
        for v in value:
            yield from walk(v, f"{path}[]")


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorServer]:
    """A shared read-only server (tests using it must not change its state)."""
    with SimulatorServer(seed=42, now=NOW) as server:
        yield server
        assert server.internal_errors == []


@pytest.fixture(scope="module")
def api(sim: SimulatorServer) -> Iterator[Api]:
    caller = Api(sim)
    yield caller
    caller.close()


@pytest.fixture
def fresh() -> Iterator[SimulatorServer]:
    """A server of its own, for tests that move the clock, switch faults or change data."""
    with SimulatorServer(seed=7, now=NOW, contexts_per_day=40) as server:
        yield server
        assert server.internal_errors == []


@pytest.fixture
def fresh_api(fresh: SimulatorServer) -> Iterator[Api]:
    caller = Api(fresh)
    yield caller
    caller.close()


# ----------------------------------------------------------------------------- auth


def test_token_flow_good_credentials(sim: SimulatorServer) -> None:
    r = httpx.post(f"{sim.url}/oauth/token", data=credentials())
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {
        "access_token",
        "token_type",
        "expires_in",
        "scope",
        "refresh_token",
        "refresh_token_expires_in",
    }
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 14399
    assert body["refresh_token"] == ""
    assert body["refresh_token_expires_in"] == 0
    assert len(body["access_token"]) >= 32
    other = httpx.post(f"{sim.url}/oauth/token", data=credentials()).json()["access_token"]
    assert other != body["access_token"]


def test_token_bad_credentials_and_bad_requests(sim: SimulatorServer) -> None:
    url = f"{sim.url}/oauth/token"
    bad = httpx.post(url, data=credentials(sim.client_id, "nope"))
    assert bad.status_code == 401
    assert bad.json() == {
        "fault": {"faultstring": "Invalid ApiKey", "detail": {"errorcode": "oauth.v2.InvalidApiKey"}}
    }
    assert "nope" not in bad.text
    wrong_id = httpx.post(url, data=credentials("x", sim.client_secret))
    assert wrong_id.status_code == 401
    grant = httpx.post(
        url, data={"grant_type": "password", "client_id": sim.client_id, "client_secret": sim.client_secret}
    )
    assert grant.status_code == 400
    assert grant.json()["details"][0]["field"] == "grant_type"
    missing = httpx.post(url, data={"grant_type": "client_credentials", "client_id": sim.client_id})
    assert missing.status_code == 400
    assert [d["field"] for d in missing.json()["details"]] == ["client_secret"]
    as_json = httpx.post(url, json={"grant_type": "client_credentials"})
    assert as_json.status_code == 400
    assert httpx.get(url).status_code == 405


def test_data_calls_need_a_valid_token(sim: SimulatorServer) -> None:
    r = httpx.get(f"{sim.url}/oe/tenants")
    assert r.status_code == 401
    assert r.json()["fault"]["faultstring"] in ("Invalid access token", "Access Token expired")
    r = httpx.get(f"{sim.url}/oe/tenants", headers={"Authorization": "Bearer made-up"})
    assert r.status_code == 401
    r = httpx.get(f"{sim.url}/oe/tenants", headers={"Authorization": "Basic abc"})
    assert r.status_code == 401


def test_expired_token_mid_run_while_expires_in_lies(fresh: SimulatorServer) -> None:
    fresh.faults.token_ttl_seconds = 1
    with httpx.Client(base_url=fresh.url) as client:
        body = client.post("/oauth/token", data=credentials(fresh.client_id, fresh.client_secret)).json()
        assert body["expires_in"] == 14399  # lie_about_expiry defaults to True
        headers = {"Authorization": f"Bearer {body['access_token']}"}
        assert client.get("/oe/tenants", headers=headers).status_code == 200
        time.sleep(1.1)
        r = client.get("/oe/tenants", headers=headers)
        assert r.status_code == 401
        assert r.json() == {
            "fault": {
                "faultstring": "Access Token expired",
                "detail": {"errorcode": "keymanagement.service.access_token_expired"},
            }
        }
        fresh.faults.lie_about_expiry = False
        honest = client.post("/oauth/token", data=credentials(fresh.client_id, fresh.client_secret)).json()
        assert honest["expires_in"] == 1
    assert fresh.faults.counters()["expired_token"] == 1


# ----------------------------------------------------------------------------- catalog and shapes


def test_tenants_and_templates_look_like_the_real_export(api: Api, sim: SimulatorServer) -> None:
    tenants = api.get("/oe/tenants").json()
    assert len(tenants) == 3
    assert all(set(t) == {"id", "name", "description", "state"} and ULID_RE.match(t["id"]) for t in tenants)
    templates = api.get("/oe/execution-templates").json()
    assert 4 <= len(templates) <= 6
    keys = ["id", "tenant", "name", "version", "trigger", "metadata", "steps", "state"]
    for t in templates:
        assert list(t) == keys
        assert ULID_RE.match(t["id"])
        assert ULID_RE.match(t["version"]["id"])
        assert set(t["trigger"][0]) == {"trigger_type", "event_type", "scenario_ids", "timeExpression"}
        assert set(t["metadata"]) == {
            "createdAt",
            "activatedAt",
            "createdBy",
            "activatedBy",
            "createdByUser",
            "activatedByUser",
        }
        assert set(t["metadata"]["createdByUser"]) == {"user_id", "user_name", "user_email"}
        assert t["state"] in ("active", "inactive")
        assert api.get(f"/oe/execution-templates/{t['id']}").json() == t
    tenant_ids = {t["id"] for t in tenants}
    used = {t["tenant"] for t in templates}
    assert used < tenant_ids  # one account has no digital process
    never = [t for t in templates if t["metadata"]["activatedAt"] == "0001-01-01T00:00:00Z"]
    assert never
    assert all(t["state"] == "inactive" for t in never)
    triggers = {t["trigger"][0]["trigger_type"]: t["trigger"][0] for t in templates}
    assert triggers["timer"]["event_type"] == "_timer-event"
    assert parse_timestamp(triggers["timer"]["timeExpression"]) is not None
    assert "." in triggers["webhook"]["event_type"]
    step_types = {s["stepType"] for t in templates for s in t["steps"]}
    assert step_types == {"scenario", "cloudfunction", "subflow", "trigger"}
    conditions = [s["condition"] for t in templates for s in t["steps"] if s["stepType"] == "trigger"]
    assert conditions
    assert set(conditions[0]) == {"left", "op", "right"}
    assert len(api.get("/oe/execution-templates", pageSize=2).json()) == 2
    r = api.get("/oe/tenants", total=True, pageSize=1, pageNumber=3)
    assert r.headers["X-Total-Count"] == "3"
    assert len(r.json()) == 1


def test_process_contexts_have_the_sample_shapes(sim: SimulatorServer) -> None:
    docs = sim.world.contexts()
    assert len(docs) > 500
    templates = {t["id"]: t for t in sim.world.templates()}
    tenants = {t["id"] for t in sim.world.tenants()}
    base = {"executionTemplateID", "executionTemplateVersionID", "instanceid", "processid", "_draft"}
    base |= {"_executionEnvironment", "_replayid", "metadata"}
    event_keys_by_template: dict[str, set[str]] = {}
    for doc in docs:
        assert list(doc) == ["metadata", "context", "status"]
        assert set(doc["metadata"]) == {"tenant", "createdAt", "updatedAt"}
        assert TS_MS_RE.match(created(doc))
        assert TS_MS_RE.match(doc["metadata"]["updatedAt"])
        assert doc["metadata"]["createdAt"] <= doc["metadata"]["updatedAt"]
        assert parse_timestamp(doc["metadata"]["updatedAt"]) <= NOW  # type: ignore[operator]
        ctx = doc["context"]
        assert base <= set(ctx)
        assert doc["metadata"]["tenant"] in tenants
        assert templates[ctx["executionTemplateID"]]["tenant"] == doc["metadata"]["tenant"]
        version, tenant, run = ctx["processid"].split("-")
        assert version == ctx["executionTemplateVersionID"]
        assert tenant == doc["metadata"]["tenant"]
        assert ULID_RE.match(run)
        assert ULID_RE.match(version)
        assert UUID_RE.match(ctx["instanceid"])
        assert set(ctx["metadata"]) == {"externalID", "scenarioid"}
        assert doc["status"] in ("running", "finished", "failed", "stopped", "paused")
        event_keys_by_template.setdefault(ctx["executionTemplateID"], set()).update(set(ctx) - base)
        for key, value in ctx.items():
            if isinstance(value, dict) and value.get("metadata", {}).get("type") == "cloud-function":
                occurred = parse_timestamp(value["metadata"]["occurredAt"])
                assert occurred is not None
                assert value["metadata"]["occurredAt"].endswith("Z")
                updated = parse_timestamp(doc["metadata"]["updatedAt"])
                assert parse_timestamp(created(doc)) <= occurred <= updated, key  # type: ignore[operator]
                assert isinstance(value["result"], dict)
    all_keys = set().union(*event_keys_by_template.values())
    assert {"order.found", "order.spotbuy.received", "order.spotbuy.pending", "Payment-Captured"} <= all_keys
    assert "celonis_postaction_feedback" in all_keys
    assert any("-" in k and any(c.isupper() for c in k) and "." in k for k in all_keys)
    key_sets = list(event_keys_by_template.values())
    assert len(key_sets) >= 3
    assert len({frozenset(k) for k in key_sets}) == len(key_sets)

    paths = [(p, v) for doc in docs for p, v in walk(doc["context"])]
    assert any(p.endswith(".order.spotbuy.pending") and v == {} for p, v in paths)  # empty object
    assert any(isinstance(v, list) and v == [] for _, v in paths)  # empty array
    assert any(
        p.endswith(".check_stock.result.warehouses") and v and all(isinstance(x, str) for x in v)
        for p, v in paths
    )
    assert any(p.endswith(".forms") and v and isinstance(v[0], dict) for p, v in paths)
    assert any(
        p.endswith(".priceBreaks") and v and isinstance(v[0], list) for p, v in paths
    )  # arrays in arrays
    feedback = [
        d["context"]["celonis_postaction_feedback"]
        for d in docs
        if "celonis_postaction_feedback" in d["context"]
    ]
    assert feedback
    assert all({"productId", "stock", "quotes"} <= set(f) for f in feedback)
    quotes = [q for f in feedback for q in f["quotes"]]
    assert quotes
    assert all({"quoteId", "supplier", "price", "currency", "lines", "priceBreaks"} <= set(q) for q in quotes)
    assert all(isinstance(line, dict) for q in quotes for line in q["lines"])


def test_statuses_depend_on_age_and_ties_exist(sim: SimulatorServer) -> None:
    docs = sim.world.contexts()
    old = [d for d in docs if parse_timestamp(created(d)) < NOW - timedelta(days=3)]  # type: ignore[operator]
    recent = [d for d in docs if parse_timestamp(created(d)) > NOW - timedelta(hours=2)]  # type: ignore[operator]
    assert sum(d["status"] != "running" for d in old) / len(old) > 0.9
    assert recent
    assert sum(d["status"] == "running" for d in recent) / len(recent) > 0.5
    assert {d["status"] for d in docs} >= {"running", "finished", "failed", "stopped"}
    by_key: dict[tuple[str, str, str], int] = {}
    for d in docs:
        k = (d["context"]["executionTemplateID"], created(d), d["metadata"]["updatedAt"])
        by_key[k] = by_key.get(k, 0) + 1
    assert any(n > 1 for n in by_key.values())  # same createdAt and same updatedAt
    days = {created(d)[:10] for d in docs}
    assert len(days) == 15
    assert NOW.strftime("%Y-%m-%d") in days


def test_determinism() -> None:
    a, b = (
        World(seed=5, days=14, contexts_per_day=60, now=NOW),
        World(seed=5, days=14, contexts_per_day=60, now=NOW),
    )
    assert a.contexts() == b.contexts()
    assert a.templates() == b.templates()
    assert a.tenants() == b.tenants()
    c = World(seed=6, days=14, contexts_per_day=60, now=NOW)
    assert c.contexts() != a.contexts()
    later = World(seed=5, days=14, contexts_per_day=60, now=NOW + timedelta(days=3))
    assert [t["id"] for t in later.templates()] == [
        t["id"] for t in a.templates()
    ]  # ids depend on the seed only
    # the same day is generated the same way whatever the window
    overlap = {pid(d) for d in later.contexts() if created(d) < "2025-03-09"}
    assert overlap
    assert overlap <= {pid(d) for d in a.contexts()}


def test_world_hands_out_copies() -> None:
    w = World(seed=1, now=NOW, days=1, contexts_per_day=20)
    doc = w.contexts()[0]
    doc["status"] = "tampered"
    doc["context"]["processid"] = "x"
    w.templates()[0]["name"] = "tampered"
    assert w.contexts()[0]["status"] != "tampered"
    assert w.templates()[0]["name"] != "tampered"


def test_world_defaults_now_to_the_current_second() -> None:
    w = World(seed=42, days=2, contexts_per_day=10)
    assert w.now.microsecond == 0
    assert w.now.tzinfo is not None
    assert abs((datetime.now(UTC) - w.now).total_seconds()) < 5


# ----------------------------------------------------------------------------- paging, filters, sorts


def test_paging_and_total_count(api: Api, sim: SimulatorServer) -> None:
    tid = busiest_template(sim)
    expected = sim.world.contexts(tid)
    r = api.get(PC.format(tid), total=True)
    assert r.status_code == 200
    assert r.headers["X-Total-Count"] == str(len(expected))
    assert r.headers["Content-Type"] == "application/json"
    assert len(r.json()) == 16  # default page size
    assert "X-Total-Count" not in api.get(PC.format(tid)).headers
    got = api.all_contexts(tid, page_size=37)
    assert got == expected
    assert [pid(d) for d in got] == [pid(d) for d in expected]
    assert api.contexts(tid, pageNumber=10_000, pageSize=1000) == []
    assert len(api.contexts(tid, pageSize=1000)) == len(expected)


def reference(docs: list[dict[str, Any]], field: str, desc: bool) -> list[str]:
    ordered = sorted(docs, key=lambda d: (parse_timestamp(d["metadata"][field]), pid(d)), reverse=desc)
    return [pid(d) for d in ordered]


@pytest.mark.parametrize(
    ("sort", "field", "desc"),
    [
        ("metadata.createdAt", "createdAt", False),
        ("metadata.createdAt.desc", "createdAt", True),
        ("metadata.updatedAt", "updatedAt", False),
        ("metadata.updatedAt.desc", "updatedAt", True),
    ],
)
def test_sorts_with_ties_broken_by_processid(
    api: Api, sim: SimulatorServer, sort: str, field: str, desc: bool
) -> None:
    for t in sim.world.templates():
        docs = sim.world.contexts(t["id"])
        got = api.all_contexts(t["id"], page_size=50, sort=sort)
        assert [pid(d) for d in got] == reference(docs, field, desc)
    stock_sync = next(t["id"] for t in sim.world.templates() if t["trigger"][0]["trigger_type"] == "timer")
    got = api.all_contexts(stock_sync, page_size=1000, sort=sort)
    ties = [(a, b) for a, b in pairwise(got) if a["metadata"][field] == b["metadata"][field]]
    assert ties  # timer fan-outs share createdAt and updatedAt
    assert all((pid(a) > pid(b)) if desc else (pid(a) < pid(b)) for a, b in ties)


def test_filters_are_inclusive_and_combine(api: Api, sim: SimulatorServer) -> None:
    tid = busiest_template(sim)
    docs = sim.world.contexts(tid)
    pivot = docs[len(docs) // 2]
    since = created(pivot)
    got = api.all_contexts(tid, createdSince=since)
    assert [pid(d) for d in got] == [pid(d) for d in docs if created(d) >= since]
    assert pid(got[0]) == pid(pivot) or created(got[0]) == since
    desc = api.all_contexts(tid, createdSince=since, sort="metadata.createdAt.desc", page_size=7)
    assert [pid(d) for d in desc] == [pid(d) for d in reversed(got)]
    upd = sorted(d["metadata"]["updatedAt"] for d in docs)[len(docs) // 3]
    got = api.all_contexts(tid, updatedSince=upd, sort="metadata.updatedAt")
    assert sorted(pid(d) for d in got) == sorted(pid(d) for d in docs if d["metadata"]["updatedAt"] >= upd)
    assert all(d["metadata"]["updatedAt"] >= upd for d in got)
    for status in ("finished", "running", "failed", "stopped", "nonsense"):
        r = api.get(PC.format(tid), total=True, status=status, pageSize=1000)
        want = [pid(d) for d in docs if d["status"] == status]
        assert [pid(d) for d in r.json()] == want
        assert r.headers["X-Total-Count"] == str(len(want))
    both = api.all_contexts(
        tid, createdSince=since, updatedSince=upd, status="finished", sort="metadata.updatedAt.desc"
    )
    want_docs = [
        d
        for d in docs
        if created(d) >= since and d["metadata"]["updatedAt"] >= upd and d["status"] == "finished"
    ]
    assert [pid(d) for d in both] == reference(want_docs, "updatedAt", True)
    # other ISO spellings of the same instant are accepted
    moment = parse_timestamp(since)
    assert moment is not None
    offset = (moment + timedelta(hours=2)).replace(tzinfo=None).isoformat(timespec="milliseconds") + "+02:00"
    assert api.all_contexts(tid, createdSince=offset) == api.all_contexts(tid, createdSince=since)


@pytest.mark.parametrize(
    ("params", "fields"),
    [
        ({"pageSize": "0"}, ["pageSize"]),
        ({"pageSize": "1001"}, ["pageSize"]),
        ({"pageSize": "-5"}, ["pageSize"]),
        ({"pageSize": "ten"}, ["pageSize"]),
        ({"pageNumber": "0"}, ["pageNumber"]),
        ({"pageNumber": "x", "pageSize": "2.5"}, ["pageNumber", "pageSize"]),
        ({"createdSince": "yesterday"}, ["createdSince"]),
        ({"updatedSince": "2025-13-01T00:00:00Z"}, ["updatedSince"]),
        ({"createdSince": ""}, ["createdSince"]),
        ({"sort": "metadata.tenant"}, ["sort"]),
    ],
)
def test_bad_parameters_are_400_with_details(
    api: Api, sim: SimulatorServer, params: dict[str, str], fields: list[str]
) -> None:
    r = api.query(PC.format(busiest_template(sim)), params)
    assert r.status_code == 400
    body = r.json()
    assert body["code"] == 400
    assert body["status"] == "Bad Request"
    assert body["message"]
    assert [d["field"] for d in body["details"]] == fields
    assert all(set(d) == {"field", "type", "message"} for d in body["details"])


def test_bad_paging_on_lists_is_400(api: Api) -> None:
    assert api.get("/oe/tenants", pageSize=1001).status_code == 400
    assert api.get("/oe/execution-templates", pageNumber=0).status_code == 400


def test_404s(api: Api) -> None:
    for path in (
        "/oe/execution-templates/01NOTATEMPLATE000000000000",
        PC.format("01NOTATEMPLATE000000000000"),
        "/oe/nothing",
        "/",
    ):
        r = api.get(path)
        assert r.status_code == 404, path
        body = r.json()
        assert body["code"] == 404
        assert body["status"] == "Not Found"
        assert isinstance(body["details"], list)


# ----------------------------------------------------------------------------- the clock


def test_advance_finishes_runs_creates_contexts_and_moves_updated_at(
    fresh: SimulatorServer, fresh_api: Api
) -> None:
    before = {pid(d): d for d in fresh.world.contexts()}
    start = fresh.world.now
    report = fresh.advance(6 * 3600)
    assert isinstance(report, AdvanceReport)
    assert fresh.world.now == start + timedelta(hours=6)
    assert report.created
    assert report.updated
    assert report.finished
    after = {pid(d): d for d in fresh.world.contexts()}
    assert set(report.created) == set(after) - set(before)
    for p in report.created:
        assert start < parse_timestamp(created(after[p])) <= fresh.world.now  # type: ignore[operator]
    assert any(after[p]["status"] == "running" for p in report.created)
    for p in report.updated:
        assert after[p]["metadata"]["updatedAt"] > before[p]["metadata"]["updatedAt"]
        assert after[p]["metadata"]["createdAt"] == before[p]["metadata"]["createdAt"]
    finished_existing = [p for p in report.finished if p in before]
    assert finished_existing
    assert all(
        before[p]["status"] == "running" and after[p]["status"] != "running" for p in finished_existing
    )
    assert any(len(after[p]["context"]) > len(before[p]["context"]) for p in report.updated)  # new event keys
    unchanged = set(before) - set(report.updated)
    assert all(before[p] == after[p] for p in unchanged)
    # what the API serves for updatedSince=<old now> is exactly what changed
    since = start.strftime("%Y-%m-%dT%H:%M:%S.001Z")
    changed = set()
    for t in fresh.world.templates():
        changed |= {pid(d) for d in fresh_api.all_contexts(t["id"], updatedSince=since)}
    assert changed == set(report.created) | set(report.updated)
    with pytest.raises(ValueError, match="forward"):
        fresh.advance(-1)


def test_live_clock_moves_the_world() -> None:
    with SimulatorServer(now=NOW, contexts_per_day=10, days=2, clock_rate=3600) as server:
        time.sleep(0.6)
        assert server.world.now - NOW >= timedelta(minutes=10)
    moved = server.world.now
    time.sleep(0.3)
    assert server.world.now == moved  # stop() stops the clock


# ----------------------------------------------------------------------------- faults


def test_429_has_retry_after(fresh: SimulatorServer, fresh_api: Api) -> None:
    fresh.faults.update({"rate_429": 1.0, "retry_after_seconds": 2})
    r = fresh_api.get("/oe/tenants")
    assert r.status_code == 429
    assert r.headers["Retry-After"] == "2"
    assert r.json()["code"] == 429
    fresh.faults.retry_after_seconds = 0.25
    assert fresh_api.get("/oe/tenants").headers["Retry-After"] == "0.25"
    fresh.faults.rate_429 = 0.0
    assert fresh_api.get("/oe/tenants").status_code == 200
    assert fresh.faults.counters()["rate_limited"] == 2


def test_5xx_rate_is_roughly_right_and_reproducible(fresh: SimulatorServer, fresh_api: Api) -> None:
    def run() -> list[int]:
        fresh.faults.reset()
        fresh.faults.update({"rate_5xx": 0.2, "seed": 11})
        return [fresh_api.get("/oe/tenants").status_code for _ in range(300)]

    codes = run()
    errors = [c for c in codes if c >= 500]
    assert 30 <= len(errors) <= 90
    assert set(errors) <= {500, 502, 503, 504}
    assert set(codes) - set(errors) == {200}
    assert fresh.faults.counters()["server_error"] == len(errors)
    assert run() == codes  # same fault seed, same sequence


def test_slow_answers(fresh: SimulatorServer, fresh_api: Api) -> None:
    fresh.faults.update({"slow_rate": 1.0, "slow_seconds": 0.3})
    t0 = time.monotonic()
    assert fresh_api.get("/oe/tenants").status_code == 200
    assert time.monotonic() - t0 >= 0.3
    assert fresh.faults.counters()["slow"] == 1


def test_revoke_tokens_every_nth_data_request(fresh: SimulatorServer, fresh_api: Api) -> None:
    fresh.faults.revoke_tokens_every = 3
    codes = [fresh_api.get("/oe/tenants").status_code for _ in range(3)]
    assert codes == [200, 200, 401]
    assert fresh_api.get("/oe/tenants").status_code == 401  # the old token is gone for good
    fresh_api.token = token(fresh, fresh_api.client)
    assert fresh_api.get("/oe/tenants").status_code == 200
    assert fresh.faults.counters()["revoked"] == 1


def test_dropped_connection_is_a_transport_error(fresh: SimulatorServer, fresh_api: Api) -> None:
    fresh.faults.drop_connection_rate = 1.0
    with pytest.raises(httpx.TransportError):
        fresh_api.get("/oe/tenants")
    fresh.faults.drop_connection_rate = 0.0
    assert fresh_api.get("/oe/tenants").status_code == 200
    assert fresh.faults.counters()["dropped"] == 1


def test_mutate_while_paging_changes_the_collection_between_pages(
    fresh: SimulatorServer, fresh_api: Api
) -> None:
    tid = busiest_template(fresh)
    before = {pid(d) for d in fresh.world.contexts(tid)}
    fresh.faults.update({"mutate_while_paging": True, "seed": 3})
    seen: list[str] = []
    page = 1
    while True:
        batch = fresh_api.contexts(tid, pageNumber=page, pageSize=20, sort="metadata.updatedAt")
        seen.extend(pid(d) for d in batch)
        if len(batch) < 20:
            break
        page += 1
    after = {pid(d) for d in fresh.world.contexts(tid)}
    assert after - before
    assert before - after
    naive_is_wrong = len(seen) != len(set(seen)) or set(seen) != after
    assert naive_is_wrong  # offset paging over a changing collection skips or repeats
    assert fresh.faults.counters()["mutated"] >= 3 * (page - 1)
    assert fresh.world.now > NOW  # each mutated page moves the clock by 1 ms


def test_fault_switches_dict_round_trip_and_validation() -> None:
    switches = FaultSwitches.from_dict({"rate_429": 0.5, "token_ttl_seconds": 5, "mutate_while_paging": True})
    assert switches.rate_429 == 0.5
    assert switches.token_ttl_seconds == 5
    assert switches.mutate_while_paging
    assert FaultSwitches.from_dict(switches.to_dict()) == switches
    assert FaultSwitches() == FaultSwitches.from_dict({})
    for bad in ({"rate_429": 2}, {"nope": 1}, {"mutate_while_paging": 1}, {"revoke_tokens_every": 0}):
        with pytest.raises(ValueError):  # noqa: PT011 - each message names its field
            FaultSwitches.from_dict(bad)


# ----------------------------------------------------------------------------- admin and hostile documents


def test_admin_endpoints(fresh: SimulatorServer, fresh_api: Api) -> None:
    admin = fresh_api.client
    state = admin.get("/_admin/state").json()
    assert state["now"] == "2025-03-10T12:00:00.000Z"
    assert state["contexts"] == sum(t["total"] for t in state["templates"].values())
    assert "faultCounters" in state
    assert "faults" in state
    report = admin.post("/_admin/advance", json={"seconds": 3600}).json()
    assert report["now"] == "2025-03-10T13:00:00.000Z"
    assert isinstance(report["created"], list)
    assert admin.post("/_admin/advance", json={"seconds": "soon"}).status_code == 400
    r = admin.post("/_admin/faults", json={"rate_429": 1.0})
    assert r.status_code == 200
    assert r.json()["switches"]["rate_429"] == 1.0
    assert fresh_api.get("/oe/tenants").status_code == 429
    assert admin.post("/_admin/faults", json={"rate_429": 7}).status_code == 400
    assert admin.post("/_admin/faults/reset").json()["switches"] == FaultSwitches().to_dict()
    assert fresh_api.get("/oe/tenants").status_code == 200
    tid = busiest_template(fresh)
    victim = pid(fresh.world.contexts(tid)[0])
    assert admin.delete(f"/_admin/contexts/{victim}").status_code == 200
    assert victim not in {pid(d) for d in fresh.world.contexts(tid)}
    assert admin.delete(f"/_admin/contexts/{victim}").status_code == 404
    doc = {"context": {"executionTemplateID": tid, "processid": "P-1"}, "status": "weird"}
    assert admin.post("/_admin/contexts", json=doc).json() == {"key": "P-1"}
    assert admin.post("/_admin/contexts", json=[1]).status_code == 400
    assert admin.post("/_admin/contexts", json={"no": "template"}).status_code == 400
    assert (
        admin.post("/_admin/contexts", params={"templateId": tid}, json={"no": "template"}).status_code == 201
    )
    assert admin.delete(f"/_admin/execution-templates/{tid}").status_code == 200
    assert fresh_api.get(PC.format(tid)).status_code == 404
    assert fresh.world.contexts(tid) == []
    assert admin.get("/_admin/nothing").status_code == 404


def test_hostile_documents_are_stored_and_served(fresh: SimulatorServer, fresh_api: Api) -> None:
    tid = busiest_template(fresh)
    hostile: list[dict[str, Any]] = [
        {"context": {"executionTemplateID": tid}},  # no metadata, no processid
        {"metadata": "oops", "context": {"executionTemplateID": tid, "processid": 42}, "status": None},
        {
            "metadata": {"createdAt": 17, "updatedAt": "never"},
            "context": {"executionTemplateID": tid, "processid": "H-2"},
        },
        {
            "metadata": {
                "createdAt": "2025-03-01T10:00:00.123456789Z",
                "updatedAt": "2025-03-01T12:00:00+02:00",
            },
            "context": {"executionTemplateID": tid, "processid": "H-3", "a.b-C": [[[]]], "": {"": None}},
            "status": "finished",
        },
    ]
    keys = [fresh.world.put_context(doc) for doc in hostile]
    assert keys[0].startswith("_anon-")
    assert keys[2] == "H-2"
    first = fresh_api.contexts(tid, pageSize=3)
    assert hostile[0] in first
    assert hostile[1] in first
    assert hostile[2] in first
    everything = fresh_api.all_contexts(tid, page_size=1000)
    assert hostile[3] in everything
    by_updated = fresh_api.all_contexts(tid, page_size=1000, sort="metadata.updatedAt.desc")
    assert len(by_updated) == len(everything)
    assert len(fresh_api.all_contexts(tid, createdSince="2025-03-01T10:00:00.123Z")) < len(everything)
    assert fresh_api.contexts(tid, status="finished", pageSize=1000)
    # replacing a generated context freezes it and serves the new document
    original = fresh.world.contexts(tid)[-1]
    replaced = {**original, "status": "stopped"}
    fresh.world.put_context(replaced)
    assert replaced in fresh_api.all_contexts(tid, page_size=1000)
    assert fresh.world.delete_context(keys[0])
    with pytest.raises(ValueError, match="unknown digital process"):
        fresh.world.put_context({"context": {}})
    assert fresh.internal_errors == []


# ----------------------------------------------------------------------------- lifecycle and CLI


def test_stop_frees_the_port_and_closes_keep_alive_connections() -> None:
    server = SimulatorServer(now=NOW, days=1, contexts_per_day=5).start()
    port = server.port
    assert server.url == f"http://127.0.0.1:{port}"
    client = httpx.Client(base_url=server.url)
    client.post("/oauth/token", data={"grant_type": "x"})  # leaves an idle keep-alive connection
    t0 = time.monotonic()
    server.stop()
    assert time.monotonic() - t0 < 3
    server.stop()  # idempotent
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))
    with pytest.raises(httpx.TransportError):
        client.get("/oe/tenants")
    client.close()


def test_cli_prints_the_env_block_and_exits_0_on_sigterm() -> None:
    code = "from oe_assets.simulator.cli import run_simulator_cli; raise SystemExit(run_simulator_cli())"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "--port", "0", "--days", "1", "--contexts-per-day", "5", "--seed", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        lines = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "Ctrl+C" in line or not line:
                break
        text = "".join(lines)
        url = re.search(r"OE_API_URL=(\S+)", text)
        assert url, text
        assert f"OE_AUTH_URL={url.group(1)}" in text
        assert "OE_CLIENT_ID=oe-demo-client" in text
        assert "OE_CLIENT_SECRET=oe-demo-secret" in text
        r = httpx.post(f"{url.group(1)}/oauth/token", data=credentials())
        assert r.status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert r.json()["access_token"] not in (
            proc.stdout.read() + (proc.stderr.read() if proc.stderr else "")
        )
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_is_run_simulator_cli_with_argv() -> None:
    # --sys.argv-style usage is exercised above; here the argv parameter is honoured for bad input
    from oe_assets.simulator.cli import run_simulator_cli

    with pytest.raises(SystemExit) as exc:
        run_simulator_cli(["--faults", "{not json"])
    assert exc.value.code == 2


def test_non_loopback_host_warns(capsys: pytest.CaptureFixture[str]) -> None:
    server = SimulatorServer(now=NOW, days=1, contexts_per_day=1, host="0.0.0.0")
    try:
        server.start()
    finally:
        server.stop()
    assert "not loopback" in capsys.readouterr().err


# ----------------------------------------------------------------------------- stream generator


def test_iter_generated_contexts_streams_realistic_documents() -> None:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    t0 = time.perf_counter()
    docs = list(iter_generated_contexts(10_000, seed=1, start=start, days=10))
    elapsed = time.perf_counter() - t0
    assert len(docs) == 10_000
    stamps = [created(d) for d in docs]
    assert stamps == sorted(stamps)
    assert stamps[0] >= "2025-01-01T00:00:00.000Z"
    assert stamps[-1] < "2025-01-11T00:00:00.000Z"
    assert len({pid(d) for d in docs}) == 10_000
    assert any(created(a) == created(b) for a, b in pairwise(docs))
    assert {d["status"] for d in docs} >= {"running", "finished", "failed"}
    assert list(iter_generated_contexts(5, seed=1, start=start)) == list(
        iter_generated_contexts(5, seed=1, start=start)
    )
    print(f"iter_generated_contexts: {10_000 / elapsed:,.0f} contexts/s")


def test_concurrent_clients_while_the_clock_runs_and_data_mutates() -> None:
    with SimulatorServer(now=NOW, days=3, contexts_per_day=200, clock_rate=36_000) as server:
        server.faults.mutate_while_paging = True
        tid = busiest_template(server)
        failures: list[str] = []

        def worker(n: int) -> None:
            caller = Api(server)
            try:
                for page in range(1, 15):
                    sort = ("metadata.createdAt", "metadata.updatedAt.desc")[n % 2]
                    r = caller.get(PC.format(tid), total=True, pageNumber=page, pageSize=25, sort=sort)
                    if r.status_code != 200 or int(r.headers["X-Total-Count"]) < 1:
                        failures.append(f"{r.status_code} {r.text[:200]}")
            finally:
                caller.close()

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert failures == []
        assert server.internal_errors == []
        deadline = time.monotonic() + 10  # the live clock ticks in the background: give it real time
        while server.world.now <= NOW + timedelta(minutes=1) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.world.now > NOW + timedelta(minutes=1)
