"""The OE client against the real OE simulator over real HTTP (loopback, port 0).

Every expectation is computed from the simulator's own state (``server.world``), never from the
client. Faults are switched on the live server; retries sleep through an injected recorder so
the suite stays fast while the recorded delays prove that ``Retry-After`` and backoff are honoured.
"""

from __future__ import annotations

import logging
import random
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest

from oe_assets.client import (
    OeAuthError,
    OeClient,
    OeClientConfig,
    OeError,
    OeNotFoundError,
    OeRetryBudgetExceeded,
    OeUnreachableError,
)
from oe_assets.config.secret import Secret
from oe_assets.simulator import SimulatorServer

NOW = datetime(2024, 3, 15, 12, 0, tzinfo=UTC)


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value)


class Sleeps(list):
    """An injected sleep that records the delays instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


class Recording(httpx.BaseTransport):
    """A real HTTP transport that remembers every access token it saw (to prove none leaks)."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.tokens: set[str] = set()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        auth = request.headers.get("Authorization")
        if auth:
            self.tokens.add(auth.partition(" ")[2])
        response = self.inner.handle_request(request)
        if request.url.path.endswith("/oauth/token"):
            response.read()
            body = orjson.loads(response.content)
            if isinstance(body, dict) and body.get("access_token"):
                self.tokens.add(body["access_token"])
        return response

    def close(self) -> None:
        self.inner.close()


@pytest.fixture(scope="module")
def server() -> Iterator[SimulatorServer]:
    with SimulatorServer(seed=11, days=6, contexts_per_day=80, now=NOW) as sim:
        yield sim


@pytest.fixture
def sim(server: SimulatorServer) -> Iterator[SimulatorServer]:
    """The shared server with all faults off before and after each test."""
    server.faults.reset()
    yield server
    server.faults.reset()
    assert server.internal_errors == []


@pytest.fixture
def fresh() -> Iterator[SimulatorServer]:
    """A server of its own, for tests that change the world."""
    with SimulatorServer(seed=5, days=3, contexts_per_day=60, now=NOW) as sim:
        yield sim
        assert sim.internal_errors == []


def make_config(sim: SimulatorServer, **overrides: Any) -> OeClientConfig:
    values: dict[str, Any] = {
        "api_url": sim.url,
        "auth_url": sim.url,
        "client_id": sim.client_id,
        "client_secret": Secret(sim.client_secret),
        "page_size": 50,
        "timeout_seconds": 5.0,
        "retry_budget_seconds": 30.0,
        "backoff_base_seconds": 0.05,
        "backoff_max_seconds": 0.2,
    }
    values.update(overrides)
    return OeClientConfig(**values)


def make_client(sim: SimulatorServer, sleeps: Sleeps | None = None, **overrides: Any) -> OeClient:
    return OeClient(
        make_config(sim, **overrides),
        sleep=sleeps if sleeps is not None else Sleeps(),
        rng=random.Random(1),
    )


def busiest_template(sim: SimulatorServer) -> str:
    return max((t["id"] for t in sim.world.templates()), key=lambda tid: len(sim.world.contexts(tid)))


def read(client: OeClient, template_id: str, **filters: Any) -> list[dict]:
    return [doc for page in client.iter_process_context_pages(template_id, **filters) for doc in page]


def pid(doc: dict) -> str:
    return doc["context"]["processid"]


# -- paging ---------------------------------------------------------------------------------------


def test_paging_returns_exactly_the_worlds_contexts(sim: SimulatorServer) -> None:
    with make_client(sim, page_size=1000) as client:
        templates = client.list_execution_templates()
        assert [t["id"] for t in templates] == [t["id"] for t in sim.world.templates()]
        assert client.list_tenants() == sim.world.tenants()
        for template in templates:
            tid = template["id"]
            assert client.get_execution_template(tid) == template
            expected = sim.world.contexts(tid)
            assert read(client, tid) == expected  # same documents, same (createdAt, processid) order
            assert client.count_process_contexts(tid) == len(expected)
        assert client.stats.retries == 0
        assert client.stats.token_requests == 1


@pytest.mark.parametrize("page_size", [1, 2, 7, 64, 999, 1000])
def test_every_page_size_gives_the_same_result(sim: SimulatorServer, page_size: int) -> None:
    tid = busiest_template(sim)
    expected = sim.world.contexts(tid)
    with make_client(sim, page_size=page_size) as client:
        assert read(client, tid) == expected
        by_update = read(client, tid, order_by="updated")
    assert sorted(by_update, key=pid) == sorted(expected, key=pid)
    assert len(by_update) == len(expected)


def test_one_day_via_created_since_and_created_before(sim: SimulatorServer) -> None:
    tid = busiest_template(sim)
    start = datetime(2024, 3, 12, tzinfo=UTC)
    end = start + timedelta(days=1)
    everything = sim.world.contexts(tid)
    expected = [d for d in everything if start <= parse(d["metadata"]["createdAt"]) < end]
    assert 0 < len(expected) < len(everything)
    with make_client(sim, page_size=10) as client:
        assert read(client, tid, created_since=start, created_before=end) == expected
        pages_for_the_day = client.stats.pages
        assert client.count_process_contexts(tid, created_since=start, created_before=end) == len(expected)
    # The read stopped at the day's end: about one page more than the day needs, not the rest.
    assert pages_for_the_day <= len(expected) // 9 + 2


def test_updated_since_and_status_finished_ordered_by_update(fresh: SimulatorServer) -> None:
    fresh.world.advance(6 * 3600)  # runs progress: updatedAt moves, statuses change
    tid = busiest_template(fresh)
    since = NOW + timedelta(hours=1)
    expected = {
        pid(d): d
        for d in fresh.world.contexts(tid)
        if d["status"] == "finished" and parse(d["metadata"]["updatedAt"]) >= since
    }
    assert expected
    with make_client(fresh, page_size=7) as client:
        got = read(client, tid, updated_since=since, status="finished", order_by="updated")
        assert client.count_process_contexts(tid, updated_since=since, status="finished") == len(expected)
        running = read(client, tid, created_since=NOW - timedelta(days=1), status="running")
    assert {pid(d): d for d in got} == expected
    assert len(got) == len(expected)
    updated = [parse(d["metadata"]["updatedAt"]) for d in got]
    assert updated == sorted(updated)
    assert all(d["status"] == "running" for d in running)
    assert {pid(d) for d in running} == {
        pid(d)
        for d in fresh.world.contexts(tid)
        if d["status"] == "running" and parse(d["metadata"]["createdAt"]) >= NOW - timedelta(days=1)
    }


def test_many_contexts_sharing_one_timestamp_across_page_boundaries(fresh: SimulatorServer) -> None:
    tid = busiest_template(fresh)
    existing = fresh.world.contexts(tid)
    template_doc = existing[len(existing) // 2]
    created = parse(template_doc["metadata"]["createdAt"]) + timedelta(microseconds=500)
    same_created = created.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    same_updated = (created + timedelta(minutes=5)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    prefix = pid(template_doc).rsplit("-", 1)[0]
    for i in range(25):
        doc = orjson.loads(orjson.dumps(template_doc))
        doc["context"]["processid"] = f"{prefix}-01TIE{i:021d}"
        doc["metadata"]["createdAt"] = same_created
        doc["metadata"]["updatedAt"] = same_updated
        fresh.world.put_context(doc)
    expected = fresh.world.contexts(tid)
    assert len(expected) == len(existing) + 25
    for page_size in (1, 3, 10, 24, 25, 26):
        with make_client(fresh, page_size=page_size) as client:
            assert read(client, tid) == expected
            by_update = read(client, tid, order_by="updated")
            assert sorted(by_update, key=pid) == sorted(expected, key=pid)
            assert len(by_update) == len(expected)


def test_contexts_without_readable_timestamps_are_still_returned(fresh: SimulatorServer) -> None:
    tid = busiest_template(fresh)
    sample = fresh.world.contexts(tid)[0]
    prefix = pid(sample).rsplit("-", 1)[0]
    for i, metadata in enumerate([{}, {"createdAt": "garbage", "updatedAt": None}, {"createdAt": 17}] * 4):
        doc = orjson.loads(orjson.dumps(sample))
        doc["context"]["processid"] = f"{prefix}-01BAD{i:021d}"
        doc["metadata"] = metadata
        fresh.world.put_context(doc)
    expected = fresh.world.contexts(tid)  # the simulator sorts unreadable timestamps first
    for page_size in (5, 50):
        with make_client(fresh, page_size=page_size) as client:
            assert read(client, tid) == expected


@pytest.mark.parametrize("order_by", ["created", "updated"])
def test_paging_while_the_collection_changes(fresh: SimulatorServer, order_by: str) -> None:
    tid = busiest_template(fresh)
    before = {pid(d) for d in fresh.world.contexts(tid)}
    fresh.faults.mutate_while_paging = True
    with make_client(fresh, page_size=10) as client:
        got = read(client, tid, order_by=order_by)
    fresh.faults.mutate_while_paging = False
    after = {pid(d) for d in fresh.world.contexts(tid)}
    mutated = fresh.faults.counters()["mutated"]
    assert mutated > 20  # created, updated and deleted while paging
    assert (before & after) - {pid(d) for d in got} == set()  # nothing that lived throughout is lost
    versions = [(pid(d), d["metadata"]["updatedAt"]) for d in got]
    assert len(versions) == len(set(versions))  # no version is handed out twice
    assert before - after  # some contexts were deleted meanwhile


# -- tokens ---------------------------------------------------------------------------------------


def test_token_is_renewed_before_it_expires(sim: SimulatorServer) -> None:
    sim.faults.update({"token_ttl_seconds": 1, "lie_about_expiry": False})
    tid = busiest_template(sim)
    with make_client(sim, token_refresh_margin_seconds=60) as client:
        first = read(client, tid)
        assert client.stats.token_requests == 1
        time.sleep(0.6)  # past the renewal point (half of the 1 s life), before the real expiry
        assert read(client, tid) == first
        assert client.stats.token_requests == 2
    assert sim.faults.counters()["expired_token"] == 0  # renewed in time, never refused


def test_token_is_renewed_once_on_401_when_the_server_lied_about_expiry(sim: SimulatorServer) -> None:
    sim.faults.update({"token_ttl_seconds": 1, "lie_about_expiry": True})
    tid = busiest_template(sim)
    with make_client(sim) as client:
        first = read(client, tid)
        time.sleep(1.05)
        assert read(client, tid) == first
        assert client.stats.token_requests == 2
    assert sim.faults.counters()["expired_token"] == 1


def test_token_revoked_mid_run_is_renewed(sim: SimulatorServer) -> None:
    sim.faults.revoke_tokens_every = 4
    tid = busiest_template(sim)
    with make_client(sim, page_size=10) as client:
        assert read(client, tid) == sim.world.contexts(tid)
        revoked = sim.faults.counters()["revoked"]
        assert revoked >= 3
        assert client.stats.token_requests == 1 + revoked


# -- retries --------------------------------------------------------------------------------------


def test_429_honours_retry_after(sim: SimulatorServer) -> None:
    sim.faults.update({"rate_429": 0.4, "retry_after_seconds": 2, "seed": 3})
    tid = busiest_template(sim)
    sleeps = Sleeps()
    with make_client(sim, sleeps, page_size=20, max_attempts=20) as client:
        assert read(client, tid) == sim.world.contexts(tid)
        limited = sim.faults.counters()["rate_limited"]
        assert limited >= 3
        assert client.stats.retries_by_reason == {"429": limited}
    assert sleeps == [2.0] * limited


def test_5xx_and_dropped_connections_are_retried(sim: SimulatorServer) -> None:
    sim.faults.update({"rate_5xx": 0.25, "drop_connection_rate": 0.15, "seed": 8})
    tid = busiest_template(sim)
    sleeps = Sleeps()
    with make_client(sim, sleeps, page_size=20, max_attempts=20) as client:
        assert read(client, tid) == sim.world.contexts(tid)
        counters = sim.faults.counters()
        by_reason = client.stats.retries_by_reason
    assert counters["server_error"] >= 1
    assert counters["dropped"] >= 1
    assert sum(v for k, v in by_reason.items() if k.startswith("5")) == counters["server_error"]
    assert by_reason.get("connection dropped", 0) == counters["dropped"]
    assert all(0 <= s <= 0.2 for s in sleeps)  # full jitter under backoff_max_seconds


def test_slow_answers_time_out_and_are_retried(sim: SimulatorServer) -> None:
    sim.faults.update({"slow_rate": 0.3, "slow_seconds": 0.6, "seed": 2})
    tid = busiest_template(sim)
    with make_client(sim, page_size=200, timeout_seconds=0.3, max_attempts=20) as client:
        assert read(client, tid) == sim.world.contexts(tid)
        assert client.stats.retries_by_reason.get("timeout", 0) >= 1


def test_retry_budget_exhausted_by_attempts(sim: SimulatorServer) -> None:
    tid = busiest_template(sim)
    sleeps = Sleeps()
    with make_client(sim, sleeps, max_attempts=4) as client:
        client.list_tenants()  # the token is fetched while the server is healthy
        sim.faults.rate_5xx = 1.0
        with pytest.raises(OeRetryBudgetExceeded) as info:
            read(client, tid)
    message = str(info.value)
    assert message.startswith(
        f"OE API at {sim.url}/oe/execution-templates/{tid}/process-contexts kept failing (HTTP 5"
    )
    assert "after 4 attempts in " in message
    assert message.endswith("the run stops and the warehouse is unchanged. Check OE_API_URL or try later.")
    assert len(sleeps) == 3


def test_retry_budget_exhausted_by_time(sim: SimulatorServer) -> None:
    sim.faults.update({"rate_429": 1.0, "retry_after_seconds": 5})
    sleeps = Sleeps()
    with (
        make_client(sim, sleeps, retry_budget_seconds=12, max_attempts=50) as client,
        pytest.raises(
            OeRetryBudgetExceeded,
            match=r"token endpoint at .*/oauth/token kept failing \(HTTP 429, asked to wait 5 s\) after 3 attempts",
        ),
    ):
        client.list_tenants()
    # The third Retry-After would outlast the budget (2 s left): the call gives up instead of waiting.
    assert sleeps == [5.0, 5.0]


# -- clear errors ---------------------------------------------------------------------------------


def test_wrong_credentials_name_the_settings(sim: SimulatorServer) -> None:
    with (
        make_client(sim, client_secret=Secret("wrong-secret-value")) as client,
        pytest.raises(OeAuthError) as info,
    ):
        client.list_tenants()
    assert str(info.value) == (
        f"OE rejected the client credentials at {sim.url}/oauth/token (401 Invalid ApiKey): "
        "check OE_CLIENT_ID and OE_CLIENT_SECRET."
    )
    assert "wrong-secret-value" not in repr(info.value)


def test_unknown_template_names_the_setting(sim: SimulatorServer) -> None:
    expected = (
        "Digital process 01HZZZZZZZZZZZZZZZZZZZZZZZ does not exist or is not visible to this API key: "
        "check OE_DIGITAL_PROCESS_IDS."
    )
    with make_client(sim) as client:
        for call in (
            lambda: read(client, "01HZZZZZZZZZZZZZZZZZZZZZZZ"),
            lambda: client.get_execution_template("01HZZZZZZZZZZZZZZZZZZZZZZZ"),
            lambda: client.count_process_contexts("01HZZZZZZZZZZZZZZZZZZZZZZZ"),
        ):
            with pytest.raises(OeNotFoundError) as info:
                call()
            assert str(info.value) == expected


def test_unreachable_port_names_the_api_url() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again before the client connects
    url = f"http://127.0.0.1:{port}"
    config = OeClientConfig(api_url=url, auth_url=url, client_id="x", client_secret=Secret("y"))
    sleeps = Sleeps()
    with OeClient(config, sleep=sleeps) as client, pytest.raises(OeUnreachableError) as info:
        client.list_tenants()
    assert str(info.value) == (
        f"Cannot reach the OE token endpoint at {url}/oauth/token (connection refused): "
        "check OE_API_URL and OE_AUTH_URL."
    )
    assert len(sleeps) == 2


def test_unreachable_api_with_reachable_auth_names_the_api_url(sim: SimulatorServer) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with (
        make_client(sim, api_url=f"http://127.0.0.1:{port}") as client,
        pytest.raises(OeUnreachableError) as info,
    ):
        client.list_tenants()
    assert str(info.value) == (
        f"Cannot reach the OE API at http://127.0.0.1:{port}/oe/tenants (connection refused): "
        "check OE_API_URL."
    )


# -- secrets --------------------------------------------------------------------------------------


def test_neither_secret_nor_token_appears_in_logs_errors_or_reprs(
    sim: SimulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    recording = Recording()
    secret = sim.client_secret
    tid = busiest_template(sim)
    texts: list[str] = []
    sim.faults.update({"rate_429": 0.2, "retry_after_seconds": 0, "rate_5xx": 0.2, "revoke_tokens_every": 3})
    config = make_config(sim, page_size=30, max_attempts=30)
    texts.append(repr(config))
    with OeClient(config, transport=recording, sleep=Sleeps(), rng=random.Random(2)) as client:
        assert read(client, tid) == sim.world.contexts(tid)
        client.count_process_contexts(tid, status="finished")
        texts += [repr(client), repr(client.stats), repr(client._tokens), repr(client._auth)]
        errors: list[OeError] = []
        with pytest.raises(OeNotFoundError) as not_found:
            read(client, "01HNOPE")
        errors.append(not_found.value)
        sim.faults.update({"rate_429": 0.0, "rate_5xx": 1.0})
        with pytest.raises(OeRetryBudgetExceeded) as exhausted:
            client.list_tenants()
        errors.append(exhausted.value)
        sim.faults.rate_5xx = 0.0
        sim.faults.revoke_tokens_every = 1  # every data call is refused: the renewed token too
        with pytest.raises(OeAuthError) as refused:
            client.list_tenants()
        errors.append(refused.value)
    sim.faults.reset()
    with make_client(sim, client_secret=Secret(secret + "x")) as client:
        with pytest.raises(OeAuthError) as bad:
            client.list_tenants()
        errors.append(bad.value)
    for error in errors:
        texts += [str(error), repr(error), repr(error.args)]
        for linked in (error.__cause__, error.__context__):
            if linked is not None and not error.__suppress_context__:
                texts.append(repr(linked))
    texts += [record.getMessage() for record in caplog.records]
    texts += [repr(record.args) for record in caplog.records]
    assert len(recording.tokens) >= 3  # several tokens were issued and used
    assert any("oe/execution-templates" in t for t in texts)  # the debug log did speak
    for text in texts:
        assert secret not in text
        for token in recording.tokens:
            assert token not in text
