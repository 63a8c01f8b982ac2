"""Unit tests of the OE client against an in-memory fake API (httpx.MockTransport).

The fake speaks the contract of docs/oe-api.md (sort, createdSince/updatedSince, status,
offset paging, X-Total-Count, Bearer tokens) and lets each test inject failures and mutations
between requests. The end-to-end tests against the real simulator live in test_client.py.
"""

from __future__ import annotations

import gc
import logging
import random
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oe_assets.client import (
    ClientStats,
    EndpointPaths,
    OeAuthError,
    OeBadResponseError,
    OeClient,
    OeClientConfig,
    OeNotFoundError,
    OeRequestError,
    OeRetryBudgetExceeded,
    OeUnreachableError,
)
from oe_assets.client.paginator import (
    _index_at_or_after,
    _instants,
    _unseen,
    _version,
    dig,
    record_key,
)
from oe_assets.client.retry import RetryPolicy, parse_retry_after
from oe_assets.config.secret import Secret, redact
from oe_assets.core.timestamps import format_oe_timestamp, parse_timestamp

SECRET = "s3cr3t-Value-never-printed"
TEMPLATE = "01HCD6ZYTDSBZ6KS1GNQYX529N"
T0 = datetime(2024, 3, 1, tzinfo=UTC)


def ts(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def when(value: str) -> datetime:
    parsed = parse_timestamp(value)
    assert parsed is not None
    return parsed


def make_context(
    n: int, created: datetime, updated: datetime | None = None, status: str = "finished"
) -> dict:
    return {
        "metadata": {"tenant": "T", "createdAt": ts(created), "updatedAt": ts(updated or created)},
        "context": {"executionTemplateID": TEMPLATE, "processid": f"V-T-{n:06d}", "order.found": {"n": n}},
        "status": status,
    }


@dataclass
class FakeApi:
    """A contract-following OE API in memory; hooks run before each data request."""

    contexts: dict[str, dict] = field(default_factory=dict)
    tenants: list[dict] = field(default_factory=lambda: [{"id": f"T{i}", "name": f"t{i}"} for i in range(5)])
    templates: list[dict] = field(default_factory=lambda: [{"id": TEMPLATE, "name": "spot buy"}])
    token_ttl: int = 14399
    tokens_issued: list[str] = field(default_factory=list)
    valid_tokens: set[str] = field(default_factory=set)
    before_data: list[Callable[[httpx.Request], httpx.Response | None]] = field(default_factory=list)
    before_token: list[Callable[[httpx.Request], httpx.Response | None]] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)
    client_secret: str = SECRET

    def add(self, *docs: dict) -> None:
        for doc in docs:
            self.contexts[doc["context"]["processid"]] = doc

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/oauth/token":
            for hook in self.before_token:
                answer = hook(request)
                if answer is not None:
                    return answer
            form = dict(httpx.QueryParams(request.content.decode()))
            if form.get("client_id") != "cid" or form.get("client_secret") != self.client_secret:
                return httpx.Response(
                    401, json={"fault": {"faultstring": "Invalid ApiKey", "detail": {"errorcode": "x"}}}
                )
            token = f"tok-{len(self.tokens_issued)}-{random.random()}"
            self.tokens_issued.append(token)
            self.valid_tokens.add(token)
            return httpx.Response(
                200, json={"access_token": token, "token_type": "Bearer", "expires_in": self.token_ttl}
            )
        for hook in self.before_data:
            answer = hook(request)
            if answer is not None:
                return answer
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.valid_tokens:
            return httpx.Response(401, json={"fault": {"faultstring": "Access Token expired"}})
        q = request.url.params
        try:
            page, size = int(q.get("pageNumber", "1")), int(q.get("pageSize", "16"))
        except ValueError:
            return httpx.Response(400, json={"code": 400, "message": "bad paging"})
        if not 1 <= size <= 1000 or page < 1:
            return httpx.Response(400, json={"code": 400, "message": "bad paging"})
        path = request.url.path
        if path == "/oe/tenants":
            rows = self.tenants
        elif path == "/oe/execution-templates":
            rows = self.templates
        elif path.startswith("/oe/execution-templates/"):
            parts = path.split("/")
            tid = parts[3]
            if tid not in {t["id"] for t in self.templates}:
                return httpx.Response(404, json={"code": 404, "message": "not found"})
            if len(parts) == 4:
                return httpx.Response(200, json=next(t for t in self.templates if t["id"] == tid))
            rows = self.select(q)
        else:
            return httpx.Response(404, json={"code": 404})
        total = len(rows)
        chunk = rows[(page - 1) * size : page * size]
        headers = {"X-Total-Count": str(total)} if request.headers.get("X-Total-Count") == "true" else {}
        return httpx.Response(200, content=orjson.dumps(chunk), headers=headers)

    def select(self, q: httpx.QueryParams) -> list[dict]:
        rows = list(self.contexts.values())
        if "createdSince" in q:
            rows = [r for r in rows if at_or_after(r["metadata"]["createdAt"], q["createdSince"])]
        if "updatedSince" in q:
            rows = [r for r in rows if at_or_after(r["metadata"]["updatedAt"], q["updatedSince"])]
        if "status" in q:
            rows = [r for r in rows if r["status"] == q["status"]]
        field_name = {"metadata.createdAt": "createdAt", "metadata.updatedAt": "updatedAt"}[
            q.get("sort", "metadata.createdAt")
        ]
        rows.sort(key=lambda r: (r["metadata"][field_name], r["context"]["processid"]))
        return rows


def at_or_after(value: str, bound: str) -> bool:
    """Timestamps compare as instants; unparsable values compare as strings (as a naive server would)."""
    parsed, parsed_bound = parse_timestamp(value), parse_timestamp(bound)
    if parsed is None or parsed_bound is None:
        return value >= bound
    return parsed >= parsed_bound


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def config(**overrides: Any) -> OeClientConfig:
    values: dict[str, Any] = {
        "api_url": "http://127.0.0.1:9",
        "auth_url": "http://127.0.0.1:9",
        "client_id": "cid",
        "client_secret": Secret(SECRET),
        "page_size": 10,
        "backoff_base_seconds": 0.01,
        "backoff_max_seconds": 0.05,
    }
    values.update(overrides)
    return OeClientConfig(**values)


def client_for(api: FakeApi, sleeps: Sleeps | None = None, **overrides: Any) -> OeClient:
    return OeClient(
        config(**overrides),
        transport=httpx.MockTransport(api.handler),
        sleep=sleeps if sleeps is not None else Sleeps(),
        rng=random.Random(7),
    )


def read_all(client: OeClient, **kwargs: Any) -> list[dict]:
    return [doc for page in client.iter_process_context_pages(TEMPLATE, **kwargs) for doc in page]


def pids(docs: list[dict]) -> list[str]:
    return [d["context"]["processid"] for d in docs]


# -- paging ---------------------------------------------------------------------------------------


def spread_contexts(n: int) -> list[dict]:
    return [
        make_context(i, T0 + timedelta(minutes=7 * i), T0 + timedelta(minutes=7 * i + 3)) for i in range(n)
    ]


@pytest.mark.parametrize("page_size", [1, 2, 3, 10, 49, 50, 51, 1000])
def test_paging_returns_every_context_once(page_size: int) -> None:
    api = FakeApi()
    api.add(*spread_contexts(50))
    with client_for(api, page_size=page_size) as client:
        docs = read_all(client)
        assert pids(docs) == sorted(api.contexts)
        assert docs == [api.contexts[p] for p in sorted(api.contexts)]
        assert client.stats.records == 50
        assert client.stats.pages >= 1


@pytest.mark.parametrize("page_size", [1, 3, 10, 24, 25, 26, 1000])
def test_ties_larger_than_a_page_are_all_returned(page_size: int) -> None:
    api = FakeApi()
    same = T0 + timedelta(hours=1)
    api.add(*spread_contexts(5))
    api.add(*[make_context(100 + i, same, same) for i in range(25)])
    api.add(*[make_context(200 + i, same + timedelta(milliseconds=1)) for i in range(3)])
    with client_for(api, page_size=page_size) as client:
        assert sorted(pids(read_all(client))) == sorted(api.contexts)
        assert sorted(pids(read_all(client, order_by="updated"))) == sorted(api.contexts)


def test_ties_beyond_max_page_size_advance_the_page_number() -> None:
    api = FakeApi()
    api.add(*[make_context(i, T0, T0) for i in range(23)])
    api.add(make_context(999, T0 + timedelta(seconds=1)))
    with client_for(api, page_size=2, max_page_size=4) as client:
        assert sorted(pids(read_all(client))) == sorted(api.contexts)
    numbers = {int(r.url.params["pageNumber"]) for r in api.requests if "pageNumber" in r.url.params}
    assert max(numbers) > 1


def test_one_day_via_created_since_and_created_before() -> None:
    api = FakeApi()
    api.add(*spread_contexts(700))  # ~3.4 days
    day_start, day_end = T0 + timedelta(days=1), T0 + timedelta(days=2)
    expected = sorted(
        p for p, d in api.contexts.items() if day_start <= when(d["metadata"]["createdAt"]) < day_end
    )
    with client_for(api, page_size=37) as client:
        got = pids(read_all(client, created_since=day_start, created_before=day_end))
    assert got == expected
    last_request = api.requests[-1]
    # Paging stopped at the day's end instead of reading the remaining days.
    assert when(last_request.url.params["createdSince"]) < day_end


def test_updated_since_and_status_filters() -> None:
    api = FakeApi()
    docs = spread_contexts(60)
    for i, d in enumerate(docs):
        d["status"] = "finished" if i % 3 else "running"
    api.add(*docs)
    since = T0 + timedelta(hours=2)
    expected = sorted(
        p
        for p, d in api.contexts.items()
        if d["status"] == "finished" and when(d["metadata"]["updatedAt"]) >= since
    )
    with client_for(api, page_size=7) as client:
        got = read_all(client, updated_since=since, status="finished", order_by="updated")
        assert sorted(pids(got)) == expected
        assert client.count_process_contexts(TEMPLATE, updated_since=since, status="finished") == len(
            expected
        )


def test_naive_datetimes_are_utc_and_timestamps_round_trip() -> None:
    assert format_oe_timestamp(datetime(2024, 3, 1, 10, 0, 0, 322000)) == "2024-03-01T10:00:00.322Z"
    assert (
        format_oe_timestamp(datetime(2024, 3, 1, 10, 0, 0, 322001, tzinfo=UTC))
        == "2024-03-01T10:00:00.322001Z"
    )
    assert format_oe_timestamp(datetime(1, 1, 1, tzinfo=UTC)) == "0001-01-01T00:00:00.000Z"
    assert parse_timestamp("2023-10-16T10:13:42.322Z") == datetime(
        2023, 10, 16, 10, 13, 42, 322000, tzinfo=UTC
    )
    assert parse_timestamp("0001-01-01T00:00:00Z") == datetime(1, 1, 1, tzinfo=UTC)
    assert parse_timestamp("yesterday") is None
    assert parse_timestamp("2024-03-01T10:00:00.123456789Z") == datetime(
        2024, 3, 1, 10, 0, 0, 123456, tzinfo=UTC
    )
    assert parse_timestamp("2024-03-01T12:00:00+02:00") == datetime(2024, 3, 1, 10, tzinfo=UTC)
    assert parse_timestamp(None) is None


def test_records_with_bad_sort_values_are_yielded_but_not_cursors() -> None:
    api = FakeApi()
    api.add(*spread_contexts(12))
    bad = make_context(500, T0)
    bad["metadata"]["createdAt"] = "not a time"
    api.add(bad)
    with client_for(api, page_size=5) as client:
        got = pids(read_all(client))
    assert sorted(got) == sorted(api.contexts)
    assert all("not a time" not in r.url.params.get("createdSince", "") for r in api.requests)


def test_count_with_created_before_subtracts() -> None:
    api = FakeApi()
    api.add(*spread_contexts(100))
    start, end = T0 + timedelta(hours=2), T0 + timedelta(hours=5)
    with client_for(api) as client:
        expected = len(read_all(client, created_since=start, created_before=end))
        assert client.count_process_contexts(TEMPLATE, created_since=start, created_before=end) == expected
        assert client.count_process_contexts(TEMPLATE) == 100
        assert client.count_process_contexts(TEMPLATE, created_since=end, created_before=start) == 0


# -- page helpers (one pass per page instead of one parse per record) ----------------------------


def test_instants_read_any_path_depth() -> None:
    stamp = "2024-03-01T10:00:00.000Z"
    records: list[dict[str, Any]] = [
        {"a": {"b": {"c": stamp}}, "m": {"t": stamp}, "x": stamp},
        {"a": {"b": "flat"}, "m": "flat", "x": None},
        {},
    ]
    at = when(stamp)
    assert _instants(records, ("m", "t")) == [at, None, None]
    assert _instants(records, ("a", "b", "c")) == [at, None, None]
    assert _instants(records, ("x",)) == [at, None, None]


def test_index_at_or_after_skips_unknown_instants() -> None:
    t = [T0 + timedelta(seconds=s) for s in range(4)]
    assert _index_at_or_after([], t[0]) == 0
    assert _index_at_or_after([None, t[0], None, t[1]], t[2]) == 4
    assert _index_at_or_after([None, t[0], None, t[2], t[3]], t[2]) == 3
    assert _index_at_or_after([t[3], None, t[0]], t[1]) == 0  # an unsorted page: the first one at/after
    assert _index_at_or_after([None, None], t[0]) == 2


def reference_unseen(
    records: list[dict], instants: list[datetime | None], seen: dict, keep_from: datetime | None
) -> list[dict]:
    """The former loop: compare every record with seen, remember every record handed out."""
    fresh = []
    for record, instant in zip(records, instants, strict=True):
        key, version = record_key(record), _version(dig(record, ("metadata", "updatedAt")))
        previous = seen.get(key)
        if previous is not None and previous[1] == version:
            continue
        seen[key] = (instant, version)
        fresh.append(record)
    return fresh


def pruned(seen: dict, keep_from: datetime | None) -> dict:
    return seen if keep_from is None else {k: v for k, v in seen.items() if v[0] is None or v[0] >= keep_from}


moments = st.sampled_from([None, T0, T0 + timedelta(seconds=1), T0 + timedelta(seconds=2)])
page_records = st.lists(
    st.tuples(
        st.sampled_from(["A", "B", "C", "D", "E", "", None]),  # "" and None: keyed by content hash
        st.sampled_from(["u1", "u2", None]),
        moments,
    ),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(earlier=page_records, page=page_records, keep_from=moments)
def test_unseen_agrees_with_comparing_every_record(
    earlier: list[tuple], page: list[tuple], keep_from: datetime | None
) -> None:
    def records_of(rows: list[tuple]) -> tuple[list[dict], list[datetime | None]]:
        docs = [
            {"metadata": {"updatedAt": u}, "context": {"processid": p}, "n": i}
            for i, (p, u, _) in enumerate(rows)
        ]
        return docs, [instant for _, _, instant in rows]

    seen_before: dict = {}
    reference_unseen(*records_of(earlier), seen_before, None)
    docs, instants = records_of(page)
    expected_seen = dict(seen_before)
    expected = reference_unseen(docs, instants, expected_seen, keep_from)
    got_seen = dict(seen_before)
    kept = _unseen(docs, instants, list(range(len(docs))), got_seen, keep_from=keep_from)
    got = [docs[i] for i in kept]
    assert [id(d) for d in got] == [id(d) for d in expected]
    assert pruned(got_seen, keep_from) == pruned(expected_seen, keep_from)


def test_no_page_is_kept_alive_while_the_next_is_read() -> None:
    """The client holds no reference to a page it handed out (a live page slows the next parse)."""
    api = FakeApi()
    api.add(*spread_contexts(35))
    probe: dict[str, dict] = {}
    page_lists_alive: list[int] = []

    def count_page_lists(request: httpx.Request) -> None:
        if "process-contexts" in request.url.path and probe:
            page_lists_alive.append(sum(isinstance(r, list) for r in gc.get_referrers(probe["record"])))

    api.before_data.append(count_page_lists)
    with client_for(api, page_size=10) as client:
        for page in client.iter_process_context_pages(TEMPLATE):
            probe["record"] = page[0]
            del page
    assert len(page_lists_alive) == 3
    assert page_lists_alive == [0, 0, 0]


@dataclass
class Mutator:
    """Between data requests: delete, update and create contexts at random."""

    api: FakeApi
    rng: random.Random
    now: datetime
    next_id: int = 10_000
    deleted: set[str] = field(default_factory=set)
    budget: int = 60

    def __call__(self, request: httpx.Request) -> None:
        if "process-contexts" not in request.url.path or self.budget <= 0:
            return
        self.budget -= 1
        live = sorted(self.api.contexts)
        for _ in range(self.rng.randint(0, 3)):
            action = self.rng.choice(["delete", "update", "create"])
            self.now += timedelta(milliseconds=self.rng.choice([0, 1, 500]))
            if action == "delete" and live:
                pid = self.rng.choice(live)
                self.api.contexts.pop(pid, None)
                self.deleted.add(pid)
            elif action == "update" and live:
                pid = self.rng.choice(live)
                if pid in self.api.contexts:
                    doc = orjson.loads(orjson.dumps(self.api.contexts[pid]))
                    doc["metadata"]["updatedAt"] = ts(self.now)
                    self.api.contexts[pid] = doc
            else:
                self.api.add(make_context(self.next_id, self.now))
                self.next_id += 1


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    page_size=st.integers(1, 12),
    order_by=st.sampled_from(["created", "updated"]),
    ties=st.integers(0, 30),
)
def test_mutation_while_paging_never_loses_or_repeats(
    seed: int, page_size: int, order_by: str, ties: int
) -> None:
    rng = random.Random(seed)
    api = FakeApi()
    docs = spread_contexts(40)
    docs += [make_context(300 + i, T0 + timedelta(hours=1), T0 + timedelta(hours=2)) for i in range(ties)]
    api.add(*docs)
    before = set(api.contexts)
    mutator = Mutator(api, rng, now=T0 + timedelta(days=30))
    api.before_data.append(mutator)
    with client_for(api, page_size=page_size) as client:
        got = read_all(client, order_by=order_by)
    survivors = before - mutator.deleted
    got_versions = [(d["context"]["processid"], d["metadata"]["updatedAt"]) for d in got]
    assert survivors <= set(pids(got))
    assert len(got_versions) == len(set(got_versions))


# -- lists ----------------------------------------------------------------------------------------


def test_tenants_and_templates_page_and_dedupe() -> None:
    api = FakeApi()
    api.tenants = [{"id": f"T{i:03d}"} for i in range(23)]
    with client_for(api, page_size=5) as client:
        assert [t["id"] for t in client.list_tenants()] == [f"T{i:03d}" for i in range(23)]
        assert client.list_execution_templates() == api.templates
        assert client.get_execution_template(TEMPLATE) == api.templates[0]


def test_list_stops_when_the_api_ignores_page_number() -> None:
    api = FakeApi()

    def same_page(request: httpx.Request) -> httpx.Response | None:
        if request.url.path == "/oe/tenants":
            return httpx.Response(200, json=[{"id": "A"}, {"id": "B"}])
        return None

    api.before_data.append(same_page)
    with client_for(api, page_size=2) as client:
        assert client.list_tenants() == [{"id": "A"}, {"id": "B"}]


# -- auth -----------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_is_cached_and_renewed_before_expiry() -> None:
    api = FakeApi(token_ttl=100)
    clock = FakeClock()
    client = OeClient(
        config(token_refresh_margin_seconds=10),
        transport=httpx.MockTransport(api.handler),
        sleep=Sleeps(),
        clock=clock,
    )
    with client:
        client.list_tenants()
        client.list_tenants()
        assert len(api.tokens_issued) == 1
        clock.now += 89
        client.list_tenants()
        assert len(api.tokens_issued) == 1
        clock.now += 2  # 91 s: within the 10 s margin
        client.list_tenants()
        assert len(api.tokens_issued) == 2
        assert client.stats.token_requests == 2


def test_short_lived_tokens_are_not_fetched_for_every_call() -> None:
    api = FakeApi(token_ttl=2)
    clock = FakeClock()
    with OeClient(config(), transport=httpx.MockTransport(api.handler), clock=clock) as client:
        for _ in range(5):
            client.list_tenants()
        assert len(api.tokens_issued) == 1


def test_401_renews_the_token_once() -> None:
    api = FakeApi()
    with client_for(api) as client:
        client.list_tenants()
        api.valid_tokens.clear()  # revoke
        assert len(client.list_tenants()) == 5
        assert len(api.tokens_issued) == 2


def test_second_401_is_an_auth_error() -> None:
    api = FakeApi()
    api.before_data.append(
        lambda r: httpx.Response(401, json={"fault": {"faultstring": "Access Token expired"}})
    )
    with client_for(api) as client, pytest.raises(OeAuthError, match="OE_AUTH_URL") as info:
        client.list_tenants()
    assert len(api.tokens_issued) == 2
    assert "Access Token expired" in str(info.value)


def test_bad_credentials_name_the_settings() -> None:
    api = FakeApi(client_secret="other")
    with client_for(api) as client, pytest.raises(OeAuthError) as info:
        client.list_tenants()
    message = str(info.value)
    assert "OE_CLIENT_ID" in message
    assert "OE_CLIENT_SECRET" in message
    assert "401 Invalid ApiKey" in message
    assert SECRET not in message


def test_token_endpoint_missing_names_auth_url() -> None:
    api = FakeApi()
    api.before_token.append(lambda r: httpx.Response(404, text="nope"))
    with client_for(api) as client, pytest.raises(OeAuthError, match="OE_AUTH_URL"):
        client.list_tenants()


def test_token_form_and_scope() -> None:
    api = FakeApi()
    with client_for(api, scope="oe.read") as client:
        client.list_tenants()
    form = dict(httpx.QueryParams(api.requests[0].content.decode()))
    assert form == {
        "grant_type": "client_credentials",
        "client_id": "cid",
        "client_secret": SECRET,
        "scope": "oe.read",
    }
    assert api.requests[0].headers["Content-Type"] == "application/x-www-form-urlencoded"


# -- retries --------------------------------------------------------------------------------------


def failing(
    times: int, answer: Callable[[], httpx.Response]
) -> Callable[[httpx.Request], httpx.Response | None]:
    left = [times]

    def hook(request: httpx.Request) -> httpx.Response | None:
        if left[0] > 0:
            left[0] -= 1
            return answer()
        return None

    return hook


def test_429_honours_retry_after() -> None:
    api = FakeApi()
    api.before_data.append(failing(2, lambda: httpx.Response(429, headers={"Retry-After": "3"})))
    sleeps = Sleeps()
    with client_for(api, sleeps) as client:
        assert len(client.list_tenants()) == 5
        assert sleeps == [3.0, 3.0]
        assert client.stats.retries == 2
        assert client.stats.retries_by_reason == {"429": 2}


def test_retry_after_is_capped_by_the_budget() -> None:
    api = FakeApi()
    api.before_data.append(failing(1, lambda: httpx.Response(429, headers={"Retry-After": "15"})))
    sleeps = Sleeps()
    with client_for(api, sleeps, retry_budget_seconds=20) as client:
        client.list_tenants()
    assert sleeps == [15.0]
    # A wait that would leave no time for another attempt is not waited for: the call gives up.
    api.before_data.append(failing(1, lambda: httpx.Response(429, headers={"Retry-After": "500"})))
    sleeps.clear()
    with (
        client_for(api, sleeps, retry_budget_seconds=20) as client,
        pytest.raises(OeRetryBudgetExceeded) as info,
    ):
        client.list_tenants()
    assert sleeps == []
    assert "asked to wait 500 s" in str(info.value)


def test_5xx_and_dropped_connections_are_retried_with_jittered_backoff() -> None:
    api = FakeApi()
    api.before_data.append(failing(1, lambda: httpx.Response(503)))

    def drop(request: httpx.Request) -> None:
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request)

    drops = [2]

    def maybe_drop(request: httpx.Request) -> None:
        if drops[0] > 0:
            drops[0] -= 1
            drop(request)

    api.before_data.append(maybe_drop)
    api.before_data.append(failing(1, lambda: httpx.Response(500)))
    sleeps = Sleeps()
    with client_for(api, sleeps, backoff_base_seconds=1.0, backoff_max_seconds=100) as client:
        assert len(client.list_tenants()) == 5
        assert client.stats.retries_by_reason == {"503": 1, "connection dropped": 2, "500": 1}
    # full jitter: the n-th sleep lies in [0, base * 2**(n-1)]
    assert all(0 <= s <= 2**i for i, s in enumerate(sleeps))


def test_read_timeouts_are_retried() -> None:
    api = FakeApi()
    left = [1]

    def slow(request: httpx.Request) -> None:
        if left[0]:
            left[0] -= 1
            raise httpx.ReadTimeout("timed out", request=request)

    api.before_data.append(slow)
    with client_for(api) as client:
        client.list_tenants()
        assert client.stats.retries_by_reason == {"timeout": 1}


def test_retry_budget_exhausted_by_attempts() -> None:
    api = FakeApi()
    api.before_data.append(lambda r: httpx.Response(502))
    sleeps = Sleeps()
    with client_for(api, sleeps, max_attempts=4) as client, pytest.raises(OeRetryBudgetExceeded) as info:
        client.list_tenants()
    message = str(info.value)
    assert "HTTP 502" in message
    assert "after 4 attempts" in message
    assert "OE_API_URL" in message
    assert "warehouse is unchanged" in message
    assert len(sleeps) == 3


def test_retry_budget_exhausted_by_time() -> None:
    api = FakeApi()
    api.before_data.append(lambda r: httpx.Response(429, headers={"Retry-After": "4"}))
    sleeps = Sleeps()
    with (
        client_for(api, sleeps, max_attempts=100, retry_budget_seconds=10) as client,
        pytest.raises(
            OeRetryBudgetExceeded, match=r"HTTP 429, asked to wait 4 s\) after 3 attempts in 8\.\d s"
        ),
    ):
        client.list_tenants()
    assert sleeps == [4.0, 4.0]  # a third wait would leave nothing of the budget for an attempt


def test_connection_refused_on_a_never_reached_host_is_unreachable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    sleeps = Sleeps()
    cfg = config(auth_url="http://127.0.0.3:9")
    client = OeClient(cfg, transport=httpx.MockTransport(refuse), sleep=sleeps)
    with client, pytest.raises(OeUnreachableError) as info:
        client.list_tenants()
    assert str(info.value) == (
        "Cannot reach the OE token endpoint at http://127.0.0.3:9/oauth/token (connection refused): "
        "check OE_AUTH_URL."
    )
    assert info.value.__cause__ is None
    assert info.value.__context__ is None  # no httpx exception (and its text) chained
    assert len(sleeps) == 2  # unreachable_after_attempts=3
    # One host for both: the token request fails first, and either setting may be the wrong one.
    with (
        OeClient(config(), transport=httpx.MockTransport(refuse), sleep=Sleeps()) as client,
        pytest.raises(OeUnreachableError, match="check OE_API_URL and OE_AUTH_URL"),
    ):
        client.list_tenants()


def test_api_host_unreachable_names_api_url() -> None:
    api = FakeApi()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "127.0.0.2":
            raise httpx.ConnectError("[Errno -2] Name or service not known", request=request)
        return api.handler(request)

    client = OeClient(
        config(api_url="http://127.0.0.2:9"), transport=httpx.MockTransport(handler), sleep=Sleeps()
    )
    with (
        client,
        pytest.raises(OeUnreachableError, match=r"OE API at http://127\.0\.0\.2:9/oe/tenants .*OE_API_URL"),
    ):
        client.list_tenants()


def test_connect_errors_after_contact_are_retried() -> None:
    api = FakeApi()
    fail = [0]

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oe/tenants" and fail[0] > 0:
            fail[0] -= 1
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        return api.handler(request)

    with OeClient(config(), transport=httpx.MockTransport(handler), sleep=Sleeps()) as client:
        client.list_tenants()
        fail[0] = 5
        assert len(client.list_tenants()) == 5
        assert client.stats.retries_by_reason == {"connect error": 5}


def test_parse_retry_after() -> None:
    now = datetime(2024, 1, 1, tzinfo=UTC)
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after("Mon, 01 Jan 2024 00:00:10 GMT", now=now) == 10.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    policy = RetryPolicy(backoff_base_seconds=0.5, backoff_max_seconds=3)
    rng = random.Random(1)
    assert all(0 <= policy.backoff(n, rng) <= min(3, 0.5 * 2 ** (n - 1)) for n in range(1, 40))


# -- errors ---------------------------------------------------------------------------------------


def test_unknown_template_names_the_setting() -> None:
    api = FakeApi()
    with client_for(api) as client:
        with pytest.raises(OeNotFoundError) as info:
            list(client.iter_process_context_pages("01NOPE"))
        assert str(info.value) == (
            "Digital process 01NOPE does not exist or is not visible to this API key: "
            "check OE_DIGITAL_PROCESS_IDS."
        )
        with pytest.raises(OeNotFoundError):
            client.get_execution_template("01NOPE")
        with pytest.raises(OeNotFoundError):
            client.count_process_contexts("01NOPE")


@pytest.mark.parametrize(
    ("body", "content_type", "fragment"),
    [
        (b"<html>proxy</html>", "text/html", "not JSON"),
        (b'{"items": []}', "application/json", "a JSON object instead of a JSON array"),
    ],
)
def test_bad_bodies_name_path_and_page(body: bytes, content_type: str, fragment: str) -> None:
    api = FakeApi()
    api.add(*spread_contexts(3))
    api.before_data.append(
        lambda r: (
            httpx.Response(200, content=body, headers={"Content-Type": content_type})
            if "process-contexts" in r.url.path
            else None
        )
    )
    with client_for(api) as client, pytest.raises(OeBadResponseError) as info:
        read_all(client)
    message = str(info.value)
    assert fragment in message
    assert f"/oe/execution-templates/{TEMPLATE}/process-contexts (page 1)" in message
    assert "OE_API_URL" in message


def test_elements_that_are_not_records_are_handed_out_as_rejected_with_their_text() -> None:
    api = FakeApi()
    good = spread_contexts(2)
    body = b"[" + orjson.dumps(good[0]) + b", 1, NaN, " + orjson.dumps(good[1]) + b"]"
    api.before_data.append(
        lambda r: httpx.Response(200, content=body) if "process-contexts" in r.url.path else None
    )
    with client_for(api) as client:
        pages = list(client.iter_process_context_pages(TEMPLATE))
    assert [pids(page) for page in pages] == [pids(good)]
    assert [r.text for r in pages[0].rejected] == ["1", "NaN"]
    assert pages[0].rejected[0].reason == "a JSON number, not a JSON object"
    assert pages[0].rejected[1].reason.startswith("not valid JSON")
    assert pages[0].texts == [orjson.dumps(d).decode() for d in good]


def test_api_ignoring_since_filter_is_a_bad_response() -> None:
    api = FakeApi()
    api.add(*spread_contexts(30))
    api.select = lambda q: sorted(api.contexts.values(), key=lambda r: r["metadata"]["createdAt"])  # type: ignore[method-assign]
    with client_for(api, page_size=10) as client, pytest.raises(OeBadResponseError, match="createdSince"):
        read_all(client)


def test_other_client_errors() -> None:
    api = FakeApi()
    api.before_data.append(lambda r: httpx.Response(403, json={"message": "nope"}))
    with client_for(api) as client, pytest.raises(OeRequestError, match="403 nope"):
        client.list_tenants()
    api = FakeApi()
    with (
        client_for(api, paths=EndpointPaths(tenants="/oe/accounts")) as client,
        pytest.raises(OeRequestError, match="no GET /oe/accounts"),
    ):
        client.list_tenants()


# -- secrets --------------------------------------------------------------------------------------


def test_config_repr_and_client_repr_hide_the_secret() -> None:
    cfg = config()
    assert SECRET not in repr(cfg)
    assert "Secret('***')" in repr(cfg)
    with pytest.raises(TypeError):
        config(client_secret=SECRET)
    with_userinfo = config(api_url="https://user:pw@api.emporix.io/")
    assert "pw" not in repr(with_userinfo)
    assert "api_url='https://api.emporix.io/'" in repr(with_userinfo)
    api = FakeApi()
    with client_for(api) as client:
        client.list_tenants()
        token = api.tokens_issued[-1]
        for text in (repr(client), repr(client._tokens), repr(client._auth), repr(client.stats)):
            assert SECRET not in text
            assert token not in text


def test_nothing_logged_or_raised_contains_secret_or_token(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    api = FakeApi()
    api.add(*spread_contexts(25))
    api.before_data.append(failing(1, lambda: httpx.Response(503)))
    # An error body that echoes the secret and the token must be redacted.
    echo = [True]

    def echo_token(request: httpx.Request) -> httpx.Response | None:
        if request.url.path.endswith("/process-contexts") and echo[0]:
            echo[0] = False
            token = request.headers["Authorization"][7:]
            return httpx.Response(400, json={"message": f"bad token {token} for secret {SECRET}"})
        return None

    with client_for(api) as client:
        client.list_tenants()
        api.before_data.append(echo_token)
        with pytest.raises(OeRequestError) as info:
            read_all(client)
        assert "bad token *** for secret ***" in str(info.value)
        api.valid_tokens.clear()
        read_all(client)
    texts = [r.getMessage() for r in caplog.records] + [str(info.value), repr(info.value)]
    assert any("GET /oe/tenants" in t for t in texts)
    for token in api.tokens_issued:
        assert all(token not in t for t in texts)
    assert all(SECRET not in t for t in texts)


def test_redact_masks_every_live_secret_by_value() -> None:
    secrets = [Secret("abc.DEF-1"), Secret("tok"), Secret("s3cr=t with space")]
    assert redact("x abc.DEF-1 y") == "x *** y"
    assert redact('"tok"') == '"***"'
    assert redact("token tok2") == "***en ***2"  # by value, not by word: every occurrence
    assert redact("Invalid secret s3cr=t with space.") == "Invalid secret ***."
    assert redact("client_secret=s3cr%3Dt+with+space&x=1") == "client_secret=***&x=1"
    assert redact("s3cr%3dt%20with%20space") == "***"
    del secrets
    assert redact("x abc.DEF-1 y") == "x abc.DEF-1 y"  # only live secrets are known


def test_cleartext_warning_only_for_remote_http() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        OeClient(config(api_url="http://localhost:1", auth_url="http://[::1]:2")).close()
        assert caught == []
        OeClient(config(api_url="https://api.emporix.io", auth_url="https://api.emporix.io")).close()
        assert caught == []
        OeClient(config(api_url="http://api.example.com", auth_url="http://api.example.com")).close()
    assert len(caught) == 1
    assert "credentials" in str(caught[0].message)
    assert "unencrypted" in str(caught[0].message)
    assert "OE_API_URL" in str(caught[0].message)
    assert "OE_AUTH_URL" in str(caught[0].message)


def test_arguments_are_checked_before_any_request() -> None:
    api = FakeApi()
    with client_for(api) as client:
        with pytest.raises(ValueError, match="order_by"):
            client.iter_process_context_pages(TEMPLATE, order_by="deleted")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="template_id"):
            client.iter_process_context_pages("")
        with pytest.raises(TypeError, match="created_since"):
            client.iter_process_context_pages(TEMPLATE, created_since="2024-01-01")  # type: ignore[arg-type]
    assert api.requests == []


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="OE_API_URL"):
        config(api_url="api.emporix.io")
    with pytest.raises(ValueError, match="page_size"):
        config(page_size=1001)
    with pytest.raises(ValueError, match="page_size"):
        config(page_size=0)


def test_stats_is_a_dataclass_with_the_documented_fields() -> None:
    stats = ClientStats()
    assert {"requests", "pages", "records", "retries", "retries_by_reason", "token_requests", "bytes"} <= set(
        vars(stats)
    )
