"""Deterministic OE data from a seed: accounts, digital processes and process-context runs.

Everything here draws from a ``random.Random`` handed in (never the global one), so the same seed
gives the same data. A process context is generated as a :class:`RunPlan` (its whole future: every
event with its time, and how the run ends); :meth:`RunPlan.materialize` shows the document as it
looks at a given moment, which is how the simulated world lets runs progress while its clock moves.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, NamedTuple

import orjson

from oe_assets.simulator.payloads import DAY, HOUR, KINDS, MINUTE, PEOPLE, SECOND, Event, wait
from oe_assets.simulator.randutil import pick, rint, rrange, ulid, uuid_from
from oe_assets.simulator.timeutil import GO_ZERO_TIME, iso_ms, iso_s, to_ms

# IDs of accounts, digital processes and versions depend on the seed only (not on "now"), so a
# restarted simulator keeps the IDs a user configured.
_CATALOG_ID_BASE_MS = 1_722_000_000_000  # 2024-07-26

__all__ = [
    "Catalog",
    "Event",
    "RunPlan",
    "TemplateSpec",
    "build_catalog",
    "duplicate_run",
    "iter_generated_contexts",
    "make_run",
    "runs_for_day",
]


# --------------------------------------------------------------------------------------------
# Catalog: accounts and digital processes


@functools.lru_cache(maxsize=4096)
def _version_id(seed: int, template_id: str, index: int, activated_ms: int) -> str:
    return ulid(random.Random(f"oe-sim:{seed}:{template_id}:version:{index}"), activated_ms)


@dataclass(frozen=True, slots=True)
class TemplateSpec:
    """How one digital process produces runs (internal to the simulator).

    Versions are deployed on a fixed schedule (every ``version_period_ms`` from
    ``version_phase_ms``), so the version a run carries depends on its createdAt and the seed
    only: any window over the same days gives the same process ids.
    """

    seed: int
    template_id: str
    tenant_id: str
    name: str
    kind: str  # key of KINDS; "" for a process that never runs
    weight: float  # share of the daily contexts
    trigger_type: str  # "webhook" or "timer"
    version_period_ms: int  # 0: a single fixed version
    version_phase_ms: int
    fixed_version_id: str

    def version_at(self, ms: int) -> tuple[str, int, int]:
        """(version id, version number, activated at ms) of the version live at ``ms``."""
        if not self.version_period_ms:
            return self.fixed_version_id, 1, 0
        index = (ms - self.version_phase_ms) // self.version_period_ms
        activated = self.version_phase_ms + index * self.version_period_ms
        number = max(1, index - (_CATALOG_ID_BASE_MS - self.version_phase_ms) // self.version_period_ms + 1)
        return _version_id(self.seed, self.template_id, index, activated), number, activated


@dataclass(slots=True)
class Catalog:
    """Accounts (tenants), digital processes (execution templates) and their run specs."""

    tenants: list[dict[str, Any]]
    templates: list[dict[str, Any]]
    specs: dict[str, TemplateSpec]

    def runnable(self) -> list[TemplateSpec]:
        """Specs that produce runs, in a fixed order."""
        return [spec for spec in self.specs.values() if spec.kind]

    def show_versions_at(self, now_ms: int) -> None:
        """Make each active template show the version live at ``now_ms`` (versions roll over time)."""
        for template in self.templates:
            spec = self.specs.get(template["id"])
            if spec is None or not spec.version_period_ms:
                continue
            version_id, number, activated = spec.version_at(now_ms)
            template["version"] = {"id": version_id, "number": number}
            template["metadata"]["activatedAt"] = iso_ms(activated)


class _TemplateRow(NamedTuple):
    tenant: int  # index into _TENANT_TABLE
    name: str
    kind: str  # key of KINDS; "" for a process that never runs
    weight: float
    trigger_type: str
    event_type: str
    version_days: int  # days between versions (0: one version)
    active: bool


_TEMPLATE_TABLE = (
    _TemplateRow(0, "Spot Buy", "spot_buy", 0.30, "webhook", "order.found", 9, True),
    _TemplateRow(0, "Order Splitting", "order_split", 0.35, "webhook", "order.created", 13, True),
    _TemplateRow(0, "Nightly Stock Sync", "stock_sync", 0.15, "timer", "_timer-event", 120, True),
    _TemplateRow(1, "Quote Approval", "quote_approval", 0.20, "webhook", "quote.requested", 21, True),
    _TemplateRow(1, "Returns Handling", "", 0.0, "webhook", "return.requested", 0, False),
)

_TENANT_TABLE = (
    ("Acme Industrial Supplies", "B2B spare parts, EU warehouses", "active"),
    ("Globex Wholesale", "Wholesale quoting desk", "active"),
    ("Initech Sandbox", "", "active"),  # an account without digital processes
)

_CLOUD_FUNCTIONS = {
    "spot_buy": "check_stock",
    "order_split": "split_order",
    "stock_sync": "fetch_inventory",
    "quote_approval": "score_quote",
}
"""The cloud function each kind of process calls (the event key its result arrives under)."""


def _blank_user() -> dict[str, str]:
    return {"user_id": "", "user_name": "", "user_email": ""}


def _user(rng: random.Random, filled: bool) -> tuple[str, dict[str, str]]:
    user_id = uuid_from(rng)
    name, mail = pick(rng, PEOPLE)
    if not filled:  # the real export often carries the id but empty user details
        return user_id, _blank_user()
    return user_id, {"user_id": user_id, "user_name": name, "user_email": f"{mail}@example.com"}


def _steps(rng: random.Random, kind: str) -> list[dict[str, Any]]:
    scenario = str(rrange(rng, 1000, 9999))
    steps: list[dict[str, Any]] = [
        {"stepType": "scenario", "scenarios": [{"scenario_id": scenario, "url": "", "method": ""}]}
    ]
    function = _CLOUD_FUNCTIONS.get(kind)
    if function is not None:
        url = f"https://functions.example.com/oe/{function}"
        steps.append(
            {"stepType": "cloudfunction", "scenarios": [{"scenario_id": "", "url": url, "method": "POST"}]}
        )
    if kind in ("spot_buy", "quote_approval"):
        steps.append(
            {
                "stepType": "trigger",
                "scenarios": [],
                "condition": {"left": "{{context.check_stock.result.inStock}}", "op": "==", "right": "false"},
            }
        )
        steps.append(
            {
                "stepType": "subflow",
                "scenarios": [{"scenario_id": str(rrange(rng, 1000, 9999)), "url": "", "method": ""}],
            }
        )
    return steps


def _tenants(rng: random.Random) -> list[dict[str, Any]]:
    tenants = []
    for i, (name, description, state) in enumerate(_TENANT_TABLE):
        tenant_ms = _CATALOG_ID_BASE_MS - 400 * DAY + i * 17 * DAY + rrange(rng, DAY)
        tenants.append({"id": ulid(rng, tenant_ms), "name": name, "description": description, "state": state})
    return tenants


def _trigger(rng: random.Random, index: int, row: _TemplateRow, created_ms: int) -> dict[str, Any]:
    timer = row.trigger_type == "timer"
    return {
        "trigger_type": row.trigger_type,
        "event_type": row.event_type,
        "scenario_ids": [] if timer or rng.random() < 0.5 else [str(1000 + index)],
        "timeExpression": iso_s((created_ms // DAY + 1) * DAY + 2 * HOUR) if timer else "",
    }


def _template(
    rng: random.Random, seed: int, index: int, row: _TemplateRow, tenant_id: str, window_start_ms: int
) -> tuple[dict[str, Any], TemplateSpec]:
    """One digital process as the API lists it, and how it produces runs."""
    id_ms = _CATALOG_ID_BASE_MS + index * 3 * DAY + rrange(rng, DAY)
    template_id = ulid(rng, id_ms)
    created_ms = window_start_ms - (60 + 25 * index) * DAY - rrange(rng, DAY)
    phase_ms = _CATALOG_ID_BASE_MS + rrange(rng, 30 * DAY)
    fixed_version = ulid(rng, id_ms + HOUR)
    created_by, created_user = _user(rng, filled=rng.random() < 0.5)
    activated_by, activated_user = _user(rng, filled=True) if row.active else ("", _blank_user())
    template = {
        "id": template_id,
        "tenant": tenant_id,
        "name": row.name,
        "version": {"id": fixed_version, "number": 1},
        "trigger": [_trigger(rng, index, row, created_ms)],
        "metadata": {
            "createdAt": iso_ms(created_ms),
            "activatedAt": GO_ZERO_TIME,
            "createdBy": created_by,
            "activatedBy": activated_by,
            "createdByUser": created_user,
            "activatedByUser": activated_user,
        },
        "steps": _steps(rng, row.kind),
        "state": "active" if row.active else "inactive",
    }
    spec = TemplateSpec(
        seed=seed,
        template_id=template_id,
        tenant_id=tenant_id,
        name=row.name,
        kind=row.kind if row.active else "",
        weight=row.weight,
        trigger_type=row.trigger_type,
        version_period_ms=row.version_days * DAY if row.active else 0,
        version_phase_ms=phase_ms,
        fixed_version_id=fixed_version,
    )
    return template, spec


def build_catalog(seed: int, window_start_ms: int, now_ms: int | None = None) -> Catalog:
    """Three accounts and five digital processes (one never activated, one account without any).

    IDs depend on ``seed`` alone; creation times are placed before ``window_start_ms`` so every
    process existed before its first context; templates show the version live at ``now_ms``.
    """
    rng = random.Random(f"oe-sim:{seed}:catalog")
    tenants = _tenants(rng)
    templates: list[dict[str, Any]] = []
    specs: dict[str, TemplateSpec] = {}
    for index, row in enumerate(_TEMPLATE_TABLE):
        template, spec = _template(rng, seed, index, row, tenants[row.tenant]["id"], window_start_ms)
        templates.append(template)
        specs[spec.template_id] = spec
    catalog = Catalog(tenants=tenants, templates=templates, specs=specs)
    catalog.show_versions_at(window_start_ms if now_ms is None else now_ms)
    return catalog


# --------------------------------------------------------------------------------------------
# Runs


@dataclass(slots=True)
class RunPlan:
    """One process context with its whole future; ``materialize`` shows it at a moment."""

    template_id: str
    tenant_id: str
    version_id: str
    processid: str
    instanceid: str
    created_ms: int
    events: list[Event]  # sorted by time, all within [created_ms, end_ms]
    end_ms: int | None  # when the run leaves "running"; None = it never does (stuck)
    outcome: str  # status once end_ms has passed
    draft: bool = False
    environment: str = "production"
    replay_id: str = ""
    external_id: str = ""
    scenario_id: str = ""

    def status_at(self, now_ms: int) -> str:
        if self.end_ms is not None and self.end_ms <= now_ms:
            return self.outcome
        return "running"

    def updated_ms_at(self, now_ms: int) -> int:
        """The run's ``updatedAt`` at ``now_ms``: its last visible change."""
        last = self.created_ms
        for t, _key, _payload in self.events:
            if t > now_ms:
                break
            last = t
        if self.end_ms is not None and self.end_ms <= now_ms:
            last = max(last, self.end_ms)
        return last

    def next_change_ms(self, now_ms: int) -> int | None:
        """When the document will next change after ``now_ms`` (None: it never will)."""
        for t, _key, _payload in self.events:
            if t > now_ms:
                return t
        if self.end_ms is not None and self.end_ms > now_ms:
            return self.end_ms
        return None

    def materialize(self, now_ms: int) -> dict[str, Any]:
        """The process-context document as the OE API returns it at ``now_ms``."""
        context: dict[str, Any] = {
            "executionTemplateID": self.template_id,
            "executionTemplateVersionID": self.version_id,
            "instanceid": self.instanceid,
            "processid": self.processid,
            "_draft": self.draft,
            "_executionEnvironment": self.environment,
            "_replayid": self.replay_id,
            "metadata": {"externalID": self.external_id, "scenarioid": self.scenario_id},
        }
        last = self.created_ms
        for t, key, payload in self.events:
            if t > now_ms:
                break
            context[key] = payload
            last = t
        status = "running"
        if self.end_ms is not None and self.end_ms <= now_ms:
            status = self.outcome
            last = max(last, self.end_ms)
        return {
            "metadata": {
                "tenant": self.tenant_id,
                "createdAt": iso_ms(self.created_ms),
                "updatedAt": iso_ms(last),
            },
            "context": context,
            "status": status,
        }


def make_run(spec: TemplateSpec, rng: random.Random, created_ms: int) -> RunPlan:
    """Generate one run of ``spec`` created at ``created_ms``: its events and how it ends."""
    events, external = KINDS[spec.kind](rng, created_ms)
    r = rng.random()
    if r < 0.78:
        outcome, cut = "finished", len(events)
    elif r < 0.87:
        outcome, cut = "failed", rint(rng, 1, len(events))
    elif r < 0.95:
        outcome, cut = "stopped", rint(rng, 1, len(events))
    elif r < 0.97:
        outcome, cut = "paused", rint(rng, 1, len(events))
    else:
        outcome, cut = "running", rint(rng, 1, len(events))  # stuck: never ends
    events = events[:cut]
    last = events[-1][0]
    end_ms: int | None
    if outcome == "finished":
        end_ms = last + rint(rng, 100, 3000)
    elif outcome == "failed":
        end_ms = last + rint(rng, SECOND, 2 * MINUTE)
    elif outcome in ("stopped", "paused"):
        end_ms = last + wait(rng, 2 * 3600, 1.0, 2 * DAY)
    else:
        end_ms = None
    version_id = spec.version_at(created_ms)[0]
    draft = rng.random() < 0.01
    return RunPlan(
        template_id=spec.template_id,
        tenant_id=spec.tenant_id,
        version_id=version_id,
        processid=f"{version_id}-{spec.tenant_id}-{ulid(rng, created_ms)}",
        instanceid=uuid_from(rng),
        created_ms=created_ms,
        events=events,
        end_ms=end_ms,
        outcome=outcome,
        draft=draft,
        environment="draft" if draft else "production",
        replay_id=ulid(rng, created_ms - HOUR) if rng.random() < 0.01 else "",
        external_id=external if rng.random() < 0.5 else "",
        scenario_id=str(rrange(rng, 1000, 9999)) if rng.random() < 0.2 else "",
    )


def duplicate_run(plan: RunPlan, rng: random.Random) -> RunPlan:
    """A twin of ``plan``: same createdAt, same event times and outcome (so the same updatedAt),
    own ids and own payload copies. Duplicate webhook deliveries and timer fan-outs do this."""
    twin = replace(plan, events=[(t, k, orjson.loads(orjson.dumps(p))) for t, k, p in plan.events])
    twin.processid = f"{plan.version_id}-{plan.tenant_id}-{ulid(rng, plan.created_ms)}"
    twin.instanceid = uuid_from(rng)
    return twin


def runs_for_day(catalog: Catalog, seed: int, day: int, contexts_per_day: int) -> list[RunPlan]:
    """Every run created on UTC day number ``day`` (days since the epoch), sorted by createdAt.

    Each day has its own rng, so a day's runs do not depend on which other days were generated
    or on how the clock was advanced.
    """
    rng = random.Random(f"oe-sim:{seed}:day:{day}")
    specs = catalog.runnable()
    if not specs or contexts_per_day <= 0:
        return []
    total = sum(spec.weight for spec in specs)
    day_start = day * DAY
    runs: list[RunPlan] = []
    for spec in specs:
        n = round(contexts_per_day * spec.weight / total * rng.uniform(0.8, 1.2))
        if spec.trigger_type == "timer":
            # a timer fires on the hour; each fire starts 1-3 runs at exactly the same millisecond
            hours = sorted(rng.sample(range(24), min(24, max(1, n // 2))))
            for hour in hours:
                first = make_run(spec, rng, day_start + hour * HOUR)
                runs.append(first)
                runs.extend(duplicate_run(first, rng) for _ in range(pick(rng, (0, 1, 1, 2))))
            continue
        for _ in range(n):
            run = make_run(spec, rng, day_start + rrange(rng, DAY))
            runs.append(run)
            if rng.random() < 0.03:  # a webhook delivered twice: a tie on createdAt and updatedAt
                runs.append(duplicate_run(run, rng))
    runs.sort(key=lambda run: (run.created_ms, run.processid))
    return runs


def iter_generated_contexts(
    n: int, *, seed: int = 0, start: datetime, days: int = 30
) -> Iterator[dict[str, Any]]:
    """Stream ``n`` realistic process contexts with createdAt spread over [start, start + days).

    Same shapes as the simulated world (documents as they look at ``start + days``), made for
    benchmarks: no world state is kept, contexts come out in createdAt order, about 2% tie with
    their predecessor on createdAt and updatedAt.
    """
    if n <= 0:
        return
    start_ms = to_ms(start)
    span = max(1, days * DAY)
    end_ms = start_ms + span
    catalog = build_catalog(seed, start_ms, end_ms)
    specs = catalog.runnable()
    cum: list[float] = []
    acc = 0.0
    for spec in specs:
        acc += spec.weight
        cum.append(acc)
    rng = random.Random(f"oe-sim:{seed}:stream")
    step = span / n
    previous: RunPlan | None = None
    for i in range(n):
        if previous is not None and rng.random() < 0.02:
            run = duplicate_run(previous, rng)
        else:
            spec = rng.choices(specs, cum_weights=cum)[0]
            created = start_ms + min(span - 1, int((i + rng.random()) * step))
            run = make_run(spec, rng, created)
        previous = run
        yield run.materialize(end_ms)
