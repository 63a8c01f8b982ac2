"""What the reliability suite proved, in numbers (a pytest plugin).

Tests add to :data:`FIGURES` (records checked, faults injected per kind, records lost, scenarios).
Each process of a session (one, or one per xdist worker) writes its share beside the session's
temporary folder; the session merges them into ``reliability.json`` there and names the file in
its summary. Nothing is written into the repository.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

SHARE = "reliability-figures-{worker}.json"
MERGED = "reliability.json"


@dataclass
class Figures:
    records_checked: int = 0
    """(process id, document hash) comparisons of the warehouse against the simulator"""
    records_lost: int = 0
    """simulator contexts missing from the warehouse (or landed with other content) after recovery"""
    records_duplicated: int = 0
    faults_injected: Counter[str] = field(default_factory=Counter)
    runs: int = 0
    """Dagster runs (in-process and in subprocesses) the suite started"""
    processes_killed: int = 0
    hostile_documents: int = 0
    scenarios: list[dict[str, Any]] = field(default_factory=list)

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]

    @property
    def touched(self) -> bool:
        return bool(self.records_checked or self.scenarios or self.faults_injected or self.runs)

    def add_faults(self, counters: Mapping[str, int]) -> None:
        self.faults_injected.update({k: v for k, v in counters.items() if v})

    def scenario(self, name: str, **data: Any) -> None:
        self.scenarios.append({"name": name, **data})

    def to_dict(self) -> dict[str, Any]:
        return {
            "records_checked": self.records_checked,
            "records_lost": self.records_lost,
            "records_duplicated": self.records_duplicated,
            "faults_injected": dict(sorted(self.faults_injected.items())),
            "runs": self.runs,
            "processes_killed": self.processes_killed,
            "hostile_documents": self.hostile_documents,
            "scenarios": self.scenarios,
        }


FIGURES = Figures()


def _session_folder(config: pytest.Config) -> Path:
    """The session's temporary folder: the main process's, which xdist workers' folders sit in."""
    base = config._tmp_path_factory.getbasetemp()  # type: ignore[attr-defined]
    return base.parent if hasattr(config, "workerinput") else base


@pytest.fixture(scope="session", autouse=True)
def reliability_figures(pytestconfig: pytest.Config) -> Iterator[Figures]:
    """Collects this process's figures and writes its share when the session ends."""
    FIGURES.reset()
    started = time.monotonic()
    yield FIGURES
    if FIGURES.touched:
        data = {**FIGURES.to_dict(), "seconds": round(time.monotonic() - started, 1)}
        worker = getattr(pytestconfig, "workerinput", {}).get("workerid", "main")
        (_session_folder(pytestconfig) / SHARE.format(worker=worker)).write_text(json.dumps(data))


def pytest_sessionfinish(session: pytest.Session) -> None:
    if hasattr(session.config, "workerinput"):
        return  # a worker: the main process merges
    folder = _session_folder(session.config)
    shares = [json.loads(p.read_text()) for p in sorted(folder.glob(SHARE.format(worker="*")))]
    if shares:
        (folder / MERGED).write_text(json.dumps(_merged(shares), indent=2) + "\n")


def _merged(shares: list[dict[str, Any]]) -> dict[str, Any]:
    faults: Counter[str] = Counter()
    for share in shares:
        faults.update(share["faults_injected"])
    total = {k: sum(s[k] for s in shares) for k in ("records_checked", "records_lost", "records_duplicated")}
    total |= {k: sum(s[k] for s in shares) for k in ("runs", "processes_killed", "hostile_documents")}
    return {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **total,
        "faults_injected_total": sum(faults.values()),
        "faults_injected": dict(sorted(faults.items())),
        "seconds_in_processes": round(sum(s["seconds"] for s in shares), 1),
        "scenarios": [scenario for share in shares for scenario in share["scenarios"]],
    }


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    merged = _session_folder(config) / MERGED
    if not hasattr(config, "workerinput") and merged.exists():
        terminalreporter.write_line(f"reliability figures: {merged}")
