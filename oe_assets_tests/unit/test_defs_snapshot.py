"""A snapshot of the whole graph: every asset spec, check, job, sensor and schedule.

A change to the graph (a key, a dependency, a description, a blocking check, a job's selection) shows
as a diff of ``snapshots/defs.json`` in review, intended or not. After an intended change:
``OE_UPDATE_SNAPSHOTS=1 .venv/bin/pytest oe_assets_tests/unit/test_defs_snapshot.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import dagster as dg

from oe_assets.config import settings
from oe_assets.definitions import build_definitions

SNAPSHOT = Path(__file__).resolve().parent / "snapshots" / "defs.json"


def _asset(spec: dg.AssetSpec) -> dict[str, Any]:
    return {
        "key": spec.key.to_user_string(),
        "group": spec.group_name,
        "deps": sorted(dep.asset_key.to_user_string() for dep in spec.deps),
        "kinds": sorted(spec.kinds),
        "owners": list(spec.owners),
        "tags": dict(sorted(spec.tags.items())),
        "partitioned": spec.partitions_def is not None,
        "table_name": spec.metadata.get("dagster/table_name"),
        "description": spec.description,
    }


def _checks(defs: dg.Definitions) -> list[dict[str, Any]]:
    specs = [spec for checks in defs.asset_checks or [] for spec in checks.check_specs]
    specs += [
        spec
        for assets in defs.assets or []
        if isinstance(assets, dg.AssetsDefinition)
        for spec in assets.check_specs
    ]
    return sorted(
        (
            {
                "asset": spec.asset_key.to_user_string(),
                "name": spec.name,
                "blocking": spec.blocking,
                "also_reads": sorted(dep.asset_key.to_user_string() for dep in spec.additional_deps),
                "description": spec.description,
            }
            for spec in specs
        ),
        key=lambda c: (c["asset"], c["name"]),
    )


def _jobs(defs: dg.Definitions) -> dict[str, Any]:
    jobs = {}
    for job in defs.jobs or []:
        resolved = defs.resolve_job_def(job.name)
        selected = resolved.asset_layer.selected_asset_keys
        jobs[job.name] = {
            "assets": sorted(key.to_user_string() for key in selected),
            "checks": len(resolved.asset_layer.asset_graph.asset_check_keys),
            "description": job.description,
        }
    return jobs


def snapshot() -> dict[str, Any]:
    defs = build_definitions(config=settings.Settings())  # the defaults, not this machine's environment
    sensors = {
        s.name: {"jobs": sorted(j.name for j in s.jobs), "default_status": s.default_status.value}
        for s in defs.sensors or []
    }
    schedules = {
        s.name: {"cron": s.cron_schedule, "default_status": s.default_status.value}
        for s in defs.schedules or []
    }
    return {
        "assets": sorted((_asset(spec) for spec in defs.resolve_all_asset_specs()), key=lambda a: a["key"]),
        "checks": _checks(defs),
        "jobs": _jobs(defs),
        "sensors": sensors,
        "schedules": schedules,
        "resources": sorted(defs.resources or {}),
    }


def test_the_graph_matches_its_snapshot() -> None:
    current = json.loads(json.dumps(snapshot(), default=str))
    if os.environ.get("OE_UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(json.dumps(current, indent=2, ensure_ascii=False) + "\n")
    expected = json.loads(SNAPSHOT.read_text())
    for part in ("assets", "checks", "jobs", "sensors", "schedules", "resources"):
        assert current[part] == expected[part], (
            f"the graph's {part} changed; if intended: OE_UPDATE_SNAPSHOTS=1 .venv/bin/pytest {__file__}"
        )
