"""The suite's configuration: its shared fixtures and figures as plugins, and a marker per folder
(``unit``, ``integration``, ``e2e``: ``pytest -m unit`` runs the fast part)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = [
    "oe_assets_tests.support.fixtures",
    "oe_assets_tests.support.figures",
    "oe_assets_tests.support.postgres",
]

HERE = Path(__file__).resolve().parent
LAYERS = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        layer = Path(item.path).resolve().relative_to(HERE).parts[0]
        if layer in LAYERS:
            item.add_marker(getattr(pytest.mark, layer))
