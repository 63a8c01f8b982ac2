"""Extraction: contexts/s read over HTTP by our OeClient vs a bare httpx loop over the same pages.

``python -m oe_assets.bench.extraction --since D --until D`` prints one JSON line; the API (a
simulator the parent serves in its own process) comes from ``OE_API_URL``, ``OE_CLIENT_ID`` and
``OE_CLIENT_SECRET``.

1. A warm-up read with our client records every page request it sends (same page size, same
   keyset cursors) through a recording transport.
2. Then, ``--repeat`` times each, alternating:
   * ours: a fresh :class:`~oe_assets.client.OeClient` (token, retries, keyset paging, de-duplication
     of records re-read at the cursor) reads every digital process's contexts created in the window,
     the call the raw asset makes;
   * bare: one ``httpx.Client``, one token request, then a plain loop GETting the recorded URLs and
     parsing each body with orjson.

Both run sequentially on one keep-alive connection (concurrency 1), as the raw asset reads, and
both drop each page before the next is read: a page kept alive meanwhile makes the next parse
and the garbage collector slower whoever reads it (docs/bench/findings.md has the figure), so it
would count against the client a cost of the caller.
The fastest of the repeats is compared (the least disturbed by other work on the machine); the
order alternates so that neither side profits from warm caches. ``bare_records`` can exceed
``contexts``: the bare loop hands out the records a keyset page re-reads at its cursor, which
our client de-duplicates.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, date, datetime
from datetime import time as dtime
from typing import Any

import httpx
import orjson

from oe_assets.bench.incremental import client_config_from_env
from oe_assets.bench.measure import print_summary
from oe_assets.client import OeClient, OeClientConfig


class _Recorder(httpx.BaseTransport):
    """Passes requests to a real transport and remembers the URLs of the process-context pages."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.urls: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path.endswith("/process-contexts"):
            self.urls.append(str(request.url))
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def _ours(
    config: OeClientConfig,
    templates: list[str],
    since: datetime,
    until: datetime,
    transport: httpx.BaseTransport | None = None,
) -> int:
    records = 0
    with OeClient(config, transport=transport) as client:
        for template in templates:
            for page in client.iter_process_context_pages(
                template, created_since=since, created_before=until
            ):
                records += len(page)
                del page  # as in the bare loop: no page stays alive while the next one is read
    return records


def _bare(config: OeClientConfig, urls: list[str]) -> int:
    records = 0
    with httpx.Client(timeout=config.timeout_seconds) as http:
        answer = http.post(
            config.auth_url.rstrip("/") + config.paths.token,
            data={
                "grant_type": "client_credentials",
                "client_id": config.client_id,
                "client_secret": config.client_secret.reveal(),
            },
        )
        answer.raise_for_status()
        headers = {"Authorization": f"Bearer {answer.json()['access_token']}", "Accept": "application/json"}
        for url in urls:
            response = http.get(url, headers=headers)
            response.raise_for_status()
            records += len(orjson.loads(response.content))
    return records


def measure(since_day: date, until_day: date, repeat: int) -> dict[str, Any]:
    config = client_config_from_env()
    since = datetime.combine(since_day, dtime.min, tzinfo=UTC)
    until = datetime.combine(until_day, dtime.min, tzinfo=UTC)
    with OeClient(config) as client:
        templates = [str(t["id"]) for t in client.list_execution_templates() if "id" in t]
    recorder = _Recorder()
    records = _ours(config, templates, since, until, transport=recorder)
    ours_times: list[float] = []
    bare_times: list[float] = []
    bare_records = 0
    for i in range(repeat):
        for which in ("ours", "bare") if i % 2 == 0 else ("bare", "ours"):  # no order advantage
            began = time.perf_counter()
            if which == "ours":
                got = _ours(config, templates, since, until)
                ours_times.append(time.perf_counter() - began)
                if got != records:
                    raise RuntimeError(f"our client read {got} contexts, the warm-up read {records}")
            else:
                bare_records = _bare(config, recorder.urls)
                bare_times.append(time.perf_counter() - began)
    ours_best, bare_best = min(ours_times), min(bare_times)
    return {
        "window": [since_day.isoformat(), until_day.isoformat()],
        "digital_processes": len(templates),
        "contexts": records,
        "bare_records": bare_records,
        "pages": len(recorder.urls),
        "page_size": config.page_size,
        "concurrency": 1,
        "repeat": repeat,
        "ours_seconds": [round(t, 4) for t in ours_times],
        "bare_seconds": [round(t, 4) for t in bare_times],
        "ours_contexts_per_second": round(records / ours_best),
        "bare_contexts_per_second": round(bare_records / bare_best),
        "overhead_ratio": round(ours_best / bare_best, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m oe_assets.bench.extraction", description=__doc__)
    parser.add_argument("--since", required=True, type=date.fromisoformat, help="first day (UTC)")
    parser.add_argument("--until", required=True, type=date.fromisoformat, help="day after the last day")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    return print_summary(lambda: measure(args.since, args.until, args.repeat))


if __name__ == "__main__":
    raise SystemExit(main())
