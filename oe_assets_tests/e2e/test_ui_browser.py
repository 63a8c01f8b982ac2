"""The Dagster UI in a real browser: Playwright driving Debian's Chromium against a real `dagster dev`.

Screenshots go to the session's temporary folder (`ui/`, named in the summary). With OE_UPDATE_DOCS_SCREENSHOTS=1 the lineage screenshot also
replaces docs/img/lineage.png (the README's picture).
"""

from __future__ import annotations

import os
import re
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

pytest.register_assert_rewrite("oe_assets_tests.support.ui_support")

from oe_assets.definitions import build_definitions  # noqa: E402
from oe_assets.model.declaration import MODEL  # noqa: E402
from oe_assets_tests.support.ui_support import (  # noqa: E402
    PROJECT_ROOT,
    DagsterUi,
    MaterializedDay,
    lineage_label,
)

pytest_plugins = ["oe_assets_tests.support.ui_support"]

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
LINEAGE_VIEWPORT = {"width": 1000, "height": 2600}
"""Tall enough that the lineage's default zoom (the graph's width fitted) shows the whole graph, which
Dagster lays out left to right, tall and narrow; the README's picture, taken at twice the pixels."""
DOCS_LINEAGE = PROJECT_ROOT / "docs" / "img" / "lineage.png"
GROUPS = ("oe_raw", "celonis_model", "process_mining", "celonis")
LINES_TABLE = "execution_context$context&celonis_postaction_feedback$quotes$lines"
# Names the first look must show in full: the backbone of the data model.
BACKBONE = (
    "raw_accounts",
    "execution_context",
    "quotes",
    "lines",
    "trigger",
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


def _new_tab(browser: object, viewport: dict[str, int], scale: float) -> object:
    """A tab with the navigation collapsed to icons, in a context of its own."""
    from playwright.sync_api import Browser

    assert isinstance(browser, Browser)
    context = browser.new_context(viewport=viewport, device_scale_factor=scale)  # type: ignore[arg-type]
    context.add_init_script("window.localStorage.setItem('dagster-nav-collapsed', 'true');")
    context.set_default_timeout(60_000)
    return context.new_page()


@pytest.fixture
def page(browser: object) -> Iterator[object]:
    tab = _new_tab(browser, VIEWPORT, 1)
    try:
        yield tab
    finally:
        tab.context.close()  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ui")


def screenshot(page: object, name: str, folder: Path) -> Path:
    path = folder / name
    page.screenshot(path=str(path))  # type: ignore[attr-defined]
    assert path.stat().st_size > 10_000, f"{path} looks empty"
    return path


def open_lineage(page: object, url: str) -> list[str]:
    """Opens a lineage page at its default zoom and hides the asset tree; returns the labels the
    graph renders (it renders only the nodes in view)."""
    from playwright.sync_api import Page

    assert isinstance(page, Page)
    page.goto(url)
    page.locator("foreignObject").filter(has_text="celonis_model").first.wait_for()
    page.locator('button:has([aria-label="panel_show_right"])').first.click()  # hide the asset tree
    page.wait_for_timeout(1500)
    # Nodes are HTML inside SVG <foreignObject>s; their labels are the innermost elements' texts.
    texts = page.locator("foreignObject").evaluate_all(LEAF_TEXTS)
    return [str(t) for t in texts]


def test_the_expanded_lineage_names_every_table_so_that_it_can_be_told_apart(
    ui: DagsterUi, browser: object, screenshots: Path
) -> None:
    """A first look at the whole graph, every group open: each asset is one node, named by its key's
    last part as ui_support.lineage_label predicts (so test_ui_graphql's check that the nodes below
    one asset show different names holds on screen), the backbone in full. The README's picture."""
    keys = build_definitions().resolve_asset_graph().get_all_asset_keys()
    expected = Counter(lineage_label(key.path[-1]) for key in keys)
    tab = _new_tab(browser, LINEAGE_VIEWPORT, 2)
    try:
        labels = open_lineage(tab, f"{ui.url}/asset-groups?expanded={expanded_groups()}")
        path = screenshot(tab, "lineage.png", screenshots)
    finally:
        tab.context.close()  # type: ignore[attr-defined]
    if os.environ.get("OE_UPDATE_DOCS_SCREENSHOTS") == "1":
        DOCS_LINEAGE.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_LINEAGE)
    for group in GROUPS:
        assert group in labels, f"group {group} not rendered; labels: {labels}"
    rendered = Counter(label for label in labels if label in expected)
    assert rendered == expected, f"missing or extra nodes: {expected - rendered} / {rendered - expected}"
    for name in BACKBONE:
        assert name in labels, f"{name} is not rendered in full; labels: {labels}"


def test_search_finds_a_child_table_by_its_celonis_name(
    ui: DagsterUi, page: object, screenshots: Path
) -> None:
    """Dagster's search (the `/` key) matches asset key paths, not descriptions or metadata: a child
    table's key holds every JSON key of its Celonis name, so that name finds it, first."""
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    page.goto(f"{ui.url}/assets")
    page.locator('a[href="/assets/accounts"]').first.wait_for()  # the catalog has loaded
    page.keyboard.press("/")
    page.get_by_placeholder(re.compile("Search")).last.fill(LINES_TABLE)
    first = page.locator("li").filter(has_text="Asset in").first
    expect(first).to_contain_text(" / ".join(MODEL.asset_key(LINES_TABLE)))
    screenshot(page, "search.png", screenshots)
    first.click()  # the asset's page names the table exactly (description, table name)
    expect(page.get_by_text(LINES_TABLE, exact=True).first).to_be_visible()
    screenshot(page, "asset-lines.png", screenshots)


def test_asset_page_shows_description_metadata_and_checks(
    ui: DagsterUi, page: object, screenshots: Path
) -> None:
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    page.goto(f"{ui.url}/assets/execution_context")
    expect(page.get_by_text("Process Context (Celonis: dimension)", exact=False).first).to_be_visible()
    for text in ("Row count", "celonis_model", "data-engineering", "DuckDB", "context$processid"):
        expect(page.get_by_text(text, exact=True).first).to_be_visible()
    source = page.get_by_role("link", name=re.compile(r"Open assets\.py .*in editor"))
    expect(source.first).to_be_visible()  # the code reference from with_source_code_references
    assert "oe_assets/defs/celonis_model/assets.py:" in (source.first.get_attribute("href") or "")
    screenshot(page, "asset-execution_context.png", screenshots)

    page.goto(f"{ui.url}/assets/execution_context?view=events")
    for text in ("summary", "dagster/partition_row_count", "quarantined"):
        expect(page.get_by_text(text, exact=True).first).to_be_visible()
    screenshot(page, "asset-execution_context-events.png", screenshots)

    page.goto(f"{ui.url}/assets/execution_context?view=checks")
    expect(page.get_by_text("fk_context_to_template", exact=True).first).to_be_visible()
    for text in ("pk_execution_context", "schema_drift", "offending_rows"):
        expect(page.get_by_text(text, exact=True).first).to_be_visible()
    expect(page.get_by_text("execution_templates.id", exact=False).first).to_be_visible()
    screenshot(page, "asset-execution_context-checks.png", screenshots)


def test_sensor_page_explains_the_sensor(ui: DagsterUi, page: object, screenshots: Path) -> None:
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    page.goto(f"{ui.url}/locations/oe_assets/sensors/finished_runs_sensor")
    expect(page.get_by_text("finished_runs_sensor", exact=False).first).to_be_visible()
    expect(page.get_by_text("status=finished", exact=False).first).to_be_visible()
    expect(page.get_by_role("checkbox").first).to_be_attached()  # "Running": the toggle that turns it on
    screenshot(page, "sensor.png", screenshots)
