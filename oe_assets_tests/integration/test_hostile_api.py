"""The OE client against a hostile API over real HTTP: slow, huge and echoing answers.

The hostile server (:mod:`oe_assets_tests.support.hostile_server`) stands in front of the simulator and
answers some requests itself. Each test here hung, ran out of memory or leaked a credential
before the client got deadlines, a size cap and redaction by value.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from functools import cache
from typing import Any

import orjson
import pytest

from oe_assets.client import (
    OeAuthError,
    OeClient,
    OeClientConfig,
    OeRequestError,
    OeResponseTooLargeError,
    OeRetryBudgetExceeded,
)
from oe_assets.config.secret import Secret
from oe_assets.simulator import SimulatorServer
from oe_assets_tests.support.hostile_server import HostileServer, Reply, Request, gzip_bomb, trickle

PROCESS_CONTEXTS = "/process-contexts"


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer(seed=11, days=1, contexts_per_day=20) as server:
        yield server


def client_for(url: str, secret: str, **overrides: Any) -> OeClient:
    values: dict[str, Any] = {
        "api_url": url,
        "auth_url": url,
        "client_id": "oe-demo-client",
        "client_secret": Secret(secret),
        "page_size": 50,
        "backoff_base_seconds": 0.05,
        "backoff_max_seconds": 0.1,
    }
    values.update(overrides)
    return OeClient(OeClientConfig(**values))


def template_of(sim: SimulatorServer) -> str:
    return str(sim.world.contexts()[0]["context"]["executionTemplateID"])


def on_pages(reply: Reply) -> Any:
    def rule(request: Request) -> Reply | None:
        return reply if request.path.endswith(PROCESS_CONTEXTS) else None

    return rule


@cache
def two_gigabyte_bomb() -> bytes:
    return gzip_bomb(2 << 30)


@pytest.mark.timeout(60)  # the exchange used to wait for every byte (about 25 minutes here)
def test_a_body_that_trickles_in_ends_at_the_deadline_and_the_budget_bounds_the_call(
    sim: SimulatorServer,
) -> None:
    page = orjson.dumps(sim.world.contexts()[:5])
    slow = Reply(200, trickle(page), headers={"Content-Length": str(len(page))}, pause_seconds=0.2)
    with HostileServer(sim.url, [on_pages(slow)]) as hostile:
        client = client_for(
            hostile.url,
            sim.client_secret,
            timeout_seconds=5,
            request_deadline_seconds=1.5,
            retry_budget_seconds=4,
        )
        began = time.monotonic()
        with client, pytest.raises(OeRetryBudgetExceeded) as info:
            list(client.iter_process_context_pages(template_of(sim)))
        took = time.monotonic() - began
    # Every byte came well within the 5 s read timeout; only the deadline stops the exchange.
    assert "no complete answer within" in str(info.value)
    assert took < 4 + 1.5, f"the retry budget of 4 s should bound the call, it took {took:.1f} s"


@pytest.mark.timeout(60)
def test_headers_that_trickle_in_end_at_the_deadline_too(sim: SimulatorServer) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Padding: " + b"a" * 200
    slow = Reply(200, raw=trickle(head), pause_seconds=0.1)
    with HostileServer(sim.url, [on_pages(slow)]) as hostile:
        client = client_for(
            hostile.url,
            sim.client_secret,
            timeout_seconds=5,
            request_deadline_seconds=1,
            retry_budget_seconds=2.5,
        )
        began = time.monotonic()
        with client, pytest.raises(OeRetryBudgetExceeded, match="no complete answer within"):
            list(client.iter_process_context_pages(template_of(sim)))
    assert time.monotonic() - began < 2.5 + 1.5


def test_a_gzip_bomb_stops_at_the_size_cap(sim: SimulatorServer) -> None:
    bomb = Reply(200, two_gigabyte_bomb(), headers={"Content-Encoding": "gzip"})
    with HostileServer(sim.url, [on_pages(bomb)]) as hostile:
        client = client_for(hostile.url, sim.client_secret, max_response_bytes=16 << 20)
        with client, pytest.raises(OeResponseTooLargeError) as info:
            list(client.iter_process_context_pages(template_of(sim)))
        received = client.stats.bytes
    assert "more than 16 MiB once decoded" in str(info.value)
    assert "OE_MAX_RESPONSE_MB" in str(info.value)
    assert received < (16 << 20) + (128 << 20)  # the cap, plus at most one inflated chunk


SECRET_WITH_PUNCTUATION = "s3cr=t with space&more"


def test_a_token_endpoint_echoing_the_secret_is_masked_in_every_form(sim: SimulatorServer) -> None:
    from urllib.parse import quote, quote_plus

    echoed = f"Invalid client secret {SECRET_WITH_PUNCTUATION}. Sent: {quote(SECRET_WITH_PUNCTUATION)} / {quote_plus(SECRET_WITH_PUNCTUATION).lower()}"

    def refuse(request: Request) -> Reply | None:
        if request.path == "/oauth/token":
            return Reply(401, orjson.dumps({"fault": {"faultstring": echoed}}))
        return None

    with HostileServer(sim.url, [refuse]) as hostile:
        client = client_for(hostile.url, SECRET_WITH_PUNCTUATION)
        with client, pytest.raises(OeAuthError) as info:
            client.list_tenants()
    message = str(info.value)
    assert "Invalid client secret ***. Sent: *** / ***" in message
    assert "s3cr" not in message


def test_a_data_endpoint_echoing_the_bearer_token_is_masked(sim: SimulatorServer) -> None:
    def echo(request: Request) -> Reply | None:
        if request.path.endswith(PROCESS_CONTEXTS):
            return Reply(400, orjson.dumps({"message": f"header was {request.headers['Authorization']}!"}))
        return None

    with HostileServer(sim.url, [echo]) as hostile:
        client = client_for(hostile.url, sim.client_secret)
        with client, pytest.raises(OeRequestError) as info:
            list(client.iter_process_context_pages(template_of(sim)))
        tokens = [r.headers["Authorization"][7:] for r in hostile.seen if "Authorization" in r.headers]
    assert tokens
    assert "header was Bearer ***!" in str(info.value)
    assert all(token not in str(info.value) for token in tokens)


def test_each_record_keeps_the_api_text_as_sent(sim: SimulatorServer) -> None:
    base = sim.world.contexts()[0]
    text = orjson.dumps(base).decode()
    odd = text[:-1] + ', "big": 123456789012345678901234567890, "dup": 1, "dup": 2 }'

    def serve(request: Request) -> Reply | None:
        if request.path.endswith(PROCESS_CONTEXTS):
            return Reply(200, ("[ " + odd + " ]").encode())
        return None

    with HostileServer(sim.url, [serve]) as hostile, client_for(hostile.url, sim.client_secret) as client:
        (page,) = list(client.iter_process_context_pages(template_of(sim)))
    assert page.texts == [odd]
    assert page[0]["dup"] == 2  # the parsed record normalises; the text does not
