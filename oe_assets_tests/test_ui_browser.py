"""The Dagster UI in a real browser: Playwright driving Debian's Chromium against a real `dagster dev`.

Screenshots go to test-artifacts/ui/. With OE_UPDATE_DOCS_SCREENSHOTS=1 the lineage screenshot also
replaces docs/img/lineage.png (the README's picture).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

pytest.register_assert_rewrite("oe_assets_tests.ui_support")

from oe_assets.definitions import build_definitions  # noqa: E402
from oe_assets_tests.ui_support import (  # noqa: E402
    ARTIFACTS,
    PROJECT_ROOT,
    DagsterUi,
    MaterializedDay,
)

pytest_plugins = ["oe_assets_tests.ui_support"]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1600, "height": 1000}
DOCS_LINEAGE = PROJECT_ROOT / "docs" / "img" / "lineage.png"
GROUPS = ("oe_raw", "celonis_model", "process_mining")
QUOTES = "execution_context$context&celonis_postaction_feedback$quotes"
# The backbone of the data model, small enough to read in one picture (the full graph has ~40 tables).
LINEAGE_SELECTION = " or ".join(
    [
        "group:oe_raw",
        "group:process_mining",
        "key:accounts",
        'key:"execution_templates"',
        'key:"execution_templates$trigger"',
        'key:"execution_context"',
        f'key:"{QUOTES}"+1',
    ]
)
LINEAGE_ASSETS = (
    "raw_process_contexts",
    "raw_execution_templates",
    "raw_accounts",
    "execution_context",
    QUOTES,
    QUOTES + "$lines",
    "execution_templates",
    "execution_templates$trigger",
    "accounts",
    "event_log",
    "activity_log",
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=(
            f"Debian's Chromium ({CHROMIUM}) is not installed and could not be installed here "
            "(.ci/run runs `apt-get install chromium` where it can); Playwright cannot download browsers"
        ),
    ),
]


LEAF_TEXTS = """
objects => objects.flatMap(fo => [...fo.querySelectorAll('*')]
  .filter(el => el.children.length === 0)
  .map(el => (el.textContent || '').trim())
  .filter(text => text.length > 0))
"""


def expanded_groups() -> str:
    """The lineage page's `expanded` parameter: every group open, so tables (not group tiles) show."""
    return quote(",".join(f"global@global:{group}" for group in GROUPS), safe="")


def label_names(label: str, names: list[str]) -> list[str]:
    """The asset names a node label can stand for: the graph shortens long names to `head…tail`."""
    if "…" not in label:
        return [label] if label in names else []
    head, tail = label.split("…", 1)
    return [n for n in names if n.startswith(head) and n.endswith(tail) and len(n) > len(head) + len(tail)]


@pytest.fixture(scope="module")
def ui(dagster_ui: DagsterUi, materialized_day: MaterializedDay) -> DagsterUi:
    """The server with a materialized day, and the first-visit community dialog dismissed."""
    assert dagster_ui.graphql("mutation { setNuxSeen }")["setNuxSeen"] is True
    return dagster_ui


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: object) -> Iterator[object]:
    from playwright.sync_api import Browser

    assert isinstance(browser, Browser)
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    # Top-to-bottom lineage (raw above model above process mining), navigation collapsed to icons.
    context.add_init_script(
        "window.localStorage.setItem('asset-graph-direction', JSON.stringify('vertical'));"
        "window.localStorage.setItem('dagster-nav-collapsed', 'true');"
    )
    context.set_default_timeout(60_000)
    tab = context.new_page()
    try:
        yield tab
    finally:
        context.close()


def screenshot(page: object, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path))  # type: ignore[attr-defined]
    assert path.stat().st_size > 10_000, f"{path} looks empty"
    return path


def open_lineage(page: object, url: str) -> list[str]:
    """Opens a lineage page, hides the asset tree, zooms to fit; returns the labels the graph renders."""
    from playwright.sync_api import Page

    assert isinstance(page, Page)
    page.goto(url)
    page.locator("foreignObject").filter(has_text="celonis_model").first.wait_for()
    page.locator('button:has([aria-label="panel_show_right"])').first.click()  # hide the asset tree
    page.wait_for_timeout(500)
    page.mouse.dblclick(VIEWPORT["width"] - 120, 125)  # double-click on the canvas: zoom to fit
    page.wait_for_timeout(1500)
    # Nodes are HTML inside SVG <foreignObject>s; their labels are the innermost elements' texts.
    texts = page.locator("foreignObject").evaluate_all(LEAF_TEXTS)
    return [str(t) for t in texts]


def test_lineage_page_renders_the_data_model(ui: DagsterUi, page: object) -> None:
    url = f"{ui.url}/asset-groups~{quote(LINEAGE_SELECTION, safe='')}/?expanded={expanded_groups()}"
    labels = open_lineage(page, url)
    path = screenshot(page, "lineage.png")
    if os.environ.get("OE_UPDATE_DOCS_SCREENSHOTS") == "1":
        DOCS_LINEAGE.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_LINEAGE)
    for group in GROUPS:
        assert group in labels, f"group {group} not rendered; labels: {labels}"
    rendered = {name for label in labels for name in label_names(label, list(LINEAGE_ASSETS))}
    missing = set(LINEAGE_ASSETS) - rendered
    assert not missing, f"not rendered: {sorted(missing)}; labels: {labels}"
    for name in ("execution_context", "event_log", "activity_log", "accounts", "raw_accounts"):
        assert name in labels, f"{name} is not rendered in full; labels: {labels}"


def test_global_lineage_renders_every_asset(ui: DagsterUi, page: object) -> None:
    names = [key.to_user_string() for key in build_definitions().resolve_asset_graph().get_all_asset_keys()]
    labels = open_lineage(page, f"{ui.url}/asset-groups?expanded={expanded_groups()}")
    screenshot(page, "lineage-full.png")
    rendered = {name for label in labels for name in label_names(label, names)}
    missing = set(names) - rendered
    assert not missing, f"not rendered: {sorted(missing)}; labels: {labels}"
    asset_labels = [label for label in labels if label_names(label, names)]
    assert len(asset_labels) == len(names), (
        f"{len(asset_labels)} asset nodes for {len(names)} assets: {labels}"
    )


def test_asset_page_shows_description_metadata_and_checks(ui: DagsterUi, page: object) -> None:
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    page.goto(f"{ui.url}/assets/execution_context")
    expect(page.get_by_text("Process Context (Celonis: dimension)", exact=False).first).to_be_visible()
    for text in ("Row count", "celonis_model", "data-engineering", "DuckDB", "context$processid"):
        expect(page.get_by_text(text, exact=True).first).to_be_visible()
    source = page.get_by_role("link", name=re.compile(r"Open assets\.py .*in editor"))
    expect(source.first).to_be_visible()  # the code reference from with_source_code_references
    assert "oe_assets/defs/celonis_model/assets.py:" in (source.first.get_attribute("href") or "")
    screenshot(page, "asset-execution_context.png")

    page.goto(f"{ui.url}/assets/execution_context?view=events")
    for text in ("summary", "dagster/partition_row_count", "quarantined"):
        expect(page.get_by_text(text, exact=True).first).to_be_visible()
    screenshot(page, "asset-execution_context-events.png")

    page.goto(f"{ui.url}/assets/execution_context?view=checks")
    expect(page.get_by_text("fk_context_to_template", exact=True).first).to_be_visible()
    for text in ("pk_execution_context", "schema_drift", "offending_rows"):
        expect(page.get_by_text(text, exact=True).first).to_be_visible()
    expect(page.get_by_text("execution_templates.id", exact=False).first).to_be_visible()
    screenshot(page, "asset-execution_context-checks.png")


def test_sensor_page_explains_the_sensor(ui: DagsterUi, page: object) -> None:
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    page.goto(f"{ui.url}/locations/oe_assets/sensors/finished_runs_sensor")
    expect(page.get_by_text("finished_runs_sensor", exact=False).first).to_be_visible()
    expect(page.get_by_text("status=finished", exact=False).first).to_be_visible()
    expect(page.get_by_role("checkbox").first).to_be_attached()  # "Running": the toggle that turns it on
    screenshot(page, "sensor.png")
