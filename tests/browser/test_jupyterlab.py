"""02-widgets in a real JupyterLab, driven by Playwright with Debian's Chromium, against a real demo network."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nbformat
import pytest

from tests.browser._lab import (
    ARTIFACTS,
    CELLS_S,
    CHROMIUM,
    CHROMIUM_ARGS,
    ROOT,
    TASK_S,
    loopback_only,
    running_lab,
)
from tests.support import unavailable

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.timeout(600)]

if not os.path.exists(CHROMIUM):
    unavailable("Chromium is not installed (apt-get install chromium)")


def _notebook_copy(folder: Path) -> Path:
    """02-widgets without outputs and without its final ``net.stop()`` (the test stops it after clicking)."""
    book = nbformat.read(ROOT / "notebooks" / "02-widgets.ipynb", as_version=4)
    assert book.cells[-1].source.strip() == "net.stop()"
    book.cells = book.cells[:-1]
    for cell in book.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    path = folder / "02-widgets.ipynb"
    nbformat.write(book, path)
    return path


@pytest.fixture
def jupyterlab(tmp_path):
    with running_lab(tmp_path) as (url, work):
        _notebook_copy(work)
        yield url


def test_widgets_notebook_runs_and_task_builder_completes(jupyterlab):
    from playwright.sync_api import expect, sync_playwright

    artifacts = ARTIFACTS
    artifacts.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            page.route("**/*", loopback_only)
            page.goto(f"{jupyterlab}/lab/tree/02-widgets.ipynb")
            page.wait_for_function(
                "() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
                " && window.jupyterapp.shell.currentWidget.sessionContext"
                " && window.jupyterapp.shell.currentWidget.sessionContext.session"
                " && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel",
                timeout=CELLS_S,
            )
            page.evaluate(
                "() => window.jupyterapp.shell.currentWidget.sessionContext.ready"
                ".then(() => window.jupyterapp.commands.execute('notebook:run-all-cells'))"
            )
            builder = page.locator(".v6nb-task-builder")
            expect(builder).to_be_visible(timeout=CELLS_S)
            expect(page.locator(".v6nb-login")).to_contain_text("logged in as", timeout=CELLS_S)
            expect(page.locator(".v6nb-network")).to_contain_text("3 of 3 nodes online")
            # the notebook's own monitor and result view, then the last cell's output
            expect(page.locator(".v6nb-result-table").first).to_be_visible(timeout=CELLS_S)

            run = builder.locator(".v6nb-run-button")
            run.scroll_into_view_if_needed()
            run.click()
            monitor = builder.locator(".v6nb-task-monitor")
            expect(monitor).to_be_visible(timeout=TASK_S)
            # the result appears once every run is final and the task completed
            table = builder.locator(".v6nb-result-table")  # its table (and one of itables)
            expect(table).to_be_visible(timeout=TASK_S)
            expect(table).to_contain_text("body_mass_g")

            statuses = monitor.locator(".v6nb-status")
            assert statuses.count() == 4  # the central run + one partial run per organization
            assert set(statuses.evaluate_all("els => els.map(e => e.dataset.status)")) == {
                "completed"
            }
            rows = monitor.locator("tr.v6nb-run")
            orgs = {rows.nth(i).locator("td").first.inner_text() for i in range(rows.count())}
            assert orgs == {"Leiden", "Utrecht", "Groningen"}
            expect(monitor).to_contain_text("4/4")

            builder.scroll_into_view_if_needed()
            builder.screenshot(path=str(artifacts / "jupyterlab-task-builder.png"))
            page.screenshot(path=str(artifacts / "jupyterlab-02-widgets.png"))

            # stop the demo network from the kernel, as the notebook's last cell would
            page.evaluate(
                "() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel"
                ".requestExecute({code: 'net.stop()'}).done"
            )
        finally:
            browser.close()
    assert (artifacts / "jupyterlab-task-builder.png").stat().st_size > 10_000
    shutil.rmtree(ROOT / ".ipynb_checkpoints", ignore_errors=True)
