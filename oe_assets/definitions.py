"""The code location: every folder of ``oe_assets/defs`` (one per layer, each with its own
``definitions``), loaded the way ``dg`` projects load them.

``dagster dev`` and ``dg`` load :data:`defs`; the CLI and the tests call :func:`build_definitions`
to build the same graph with settings or resources of their own.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path

import dagster as dg

from oe_assets.config import settings

# BackfillPolicy and pools are stable enough for us; their beta notices would drown the CLI's output.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def build_definitions(
    resources: Mapping[str, object] | None = None, config: settings.Settings | None = None
) -> dg.Definitions:
    """The graph of ``oe_assets/defs``, built with ``config`` (default: the environment's
    settings) and with ``resources`` in place of the ones the settings describe."""
    with settings.overriding(config or settings.Settings.from_env()):
        loaded = dg.load_from_defs_folder(path_within_project=PROJECT_ROOT)
    return loaded if not resources else _with_resources(loaded, resources)


def _with_resources(defs: dg.Definitions, resources: Mapping[str, object]) -> dg.Definitions:
    return dg.Definitions(
        assets=defs.assets,
        asset_checks=defs.asset_checks,
        jobs=defs.jobs,
        schedules=defs.schedules,
        sensors=defs.sensors,
        resources={**(defs.resources or {}), **resources},
        executor=defs.executor,
        loggers=defs.loggers,
        metadata=defs.metadata,
    )


@dg.definitions
def defs() -> dg.Definitions:
    return dg.load_from_defs_folder(path_within_project=PROJECT_ROOT)
