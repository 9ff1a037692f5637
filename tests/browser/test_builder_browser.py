"""The generated TaskBuilder, the check before sending and the live wait, in a real JupyterLab (Chromium)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import nbformat
import pytest

from tests.browser._lab import (
    ARTIFACTS,
    CELLS_S,
    CHROMIUM,
    CHROMIUM_ARGS,
    TASK_S,
    kernel_eval,
    open_notebook,
    running_lab,
)
from tests.support import unavailable
from vantage6nb.catalog import known_algorithms

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.timeout(900)]

if not os.path.exists(CHROMIUM):
    unavailable("Chromium is not installed (apt-get install chromium)")

NOTEBOOK = "builder.ipynb"
RESTART_FLAG = "restart-groningen"  # created by the test once it saw the blocked cell's monitor
# each cell starts with its tag, so the test finds it even after "Copy as code" inserted a cell
CELLS = {
    "setup": """# setup
import time

from vantage6nb import analysis, demo
from vantage6nb.widgets import TaskBuilder

net = demo.start(nodes=3)
client = net.client()
# the nodes report their columns just after they connect: the builder offers what is known
deadline = time.monotonic() + 120
while client.columns()["organization"].nunique() < 3 and time.monotonic() < deadline:
    time.sleep(0.2)
print("ready:", ", ".join(net.node_names))""",
    "builder": """# builder
builder = TaskBuilder(client)
builder""",
    "checker": """# checker
checker = TaskBuilder(client)
checker""",
    "typo": """# typo
analysis.summary(client, columns=["bill_lenght_mm"])""",
    "offline": f"""# offline
import threading
import time
from pathlib import Path


def restart_when_told(flag=Path({RESTART_FLAG!r}), deadline=time.monotonic() + 300):
    # the browser test creates the flag once it has seen the blocked cell's monitor
    while not flag.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    net.start_node("Groningen")


net.stop_node("Groningen")
threading.Thread(target=restart_when_told, daemon=True).start()
print("Groningen's node stopped")""",
    "blocked": """# blocked
df = analysis.summary(client, columns=["body_mass_g"])
df""",
}
TASK_COUNT = "print(len(client.task.list()))"


def _write_notebook(folder: Path) -> None:
    book = nbformat.v4.new_notebook()
    book.cells = [nbformat.v4.new_code_cell(source) for source in CELLS.values()]
    book.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(book, folder / NOTEBOOK)


@pytest.fixture
def jupyterlab(tmp_path):
    with running_lab(tmp_path) as (url, work):
        _write_notebook(work)
        yield url, work


def _cell(page, tag: str):
    """The notebook cell whose source starts with ``# tag``."""
    return page.locator(".jp-NotebookPanel .jp-Notebook .jp-CodeCell").filter(
        has=page.locator(".jp-InputArea-editor", has_text=f"# {tag}")
    )


def _run(page, tag: str) -> None:
    """Run the cell tagged ``tag`` as Shift+Enter in it would (returns at once)."""
    page.evaluate(
        "(tag) => { const nb = window.jupyterapp.shell.currentWidget;"
        " const i = nb.content.widgets.findIndex("
        "  (c) => c.model.sharedModel.getSource().startsWith('# ' + tag + '\\n'));"
        " if (i < 0) throw new Error('no cell ' + tag);"
        " nb.content.activeCellIndex = i;"
        " window.jupyterapp.commands.execute('notebook:run-cell'); return null; }",
        tag,
    )


def _task_count(page) -> int:
    text = kernel_eval(page, TASK_COUNT)
    assert text.strip().isdigit(), text
    return int(text)


def _shot(locator, name: str) -> Path:
    path = ARTIFACTS / name
    locator.scroll_into_view_if_needed()
    locator.screenshot(path=str(path))
    return path


def test_builder_picks_columns_checks_before_sending_and_waits_live(jupyterlab):
    from playwright.sync_api import expect, sync_playwright

    url, work = jupyterlab
    ARTIFACTS.mkdir(exist_ok=True)
    shots: list[Path] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = open_notebook(browser, url, NOTEBOOK, height=2000)
            _run(page, "setup")
            expect(_cell(page, "setup")).to_contain_text(
                "ready: Leiden, Utrecht, Groningen", timeout=CELLS_S
            )

            # (1) the generated form: pick columns, tick organizations, run, watch the monitor
            _run(page, "builder")
            builder = _cell(page, "builder").locator(".v6nb-task-builder")
            expect(builder).to_be_visible(timeout=CELLS_S)
            expect(builder.locator(".v6nb-arg-columns input")).to_have_attribute(
                "placeholder", "columns (optional)"
            )
            shots.append(_shot(builder, "builder-0-generated.png"))
            orgs = builder.locator(".v6nb-organizations")
            for name in ("Leiden", "Utrecht", "Groningen"):  # all ticked at first
                expect(orgs.get_by_label(name)).to_be_checked()
                orgs.get_by_label(name).click()
                expect(orgs.get_by_label(name)).not_to_be_checked()
            for name in ("Leiden", "Utrecht"):
                orgs.get_by_label(name).click()
                expect(orgs.get_by_label(name)).to_be_checked()

            picker = builder.locator(".v6nb-arg-columns .jupyter-widget-tagsinput")
            # the picker offers what the nodes reported (client.columns())
            offered = picker.locator("datalist option")
            expect(offered.first).to_be_attached(timeout=CELLS_S)
            suggestions = offered.evaluate_all("els => els.map(e => e.value)")
            assert {"bill_length_mm", "body_mass_g", "species"} <= set(suggestions)
            typing = picker.locator("input.jupyter-widget-taginput")
            tags = picker.locator(".jupyter-widget-tag:not(input)")
            for i, column in enumerate(("bill_length_mm", "body_mass_g")):
                picker.click()
                typing.press_sequentially(column)
                # Tab commits the typed name (headless Chromium's datalist popup takes Enter)
                typing.press("Tab")
                expect(tags).to_have_count(i + 1)
                expect(tags.nth(i)).to_contain_text(column)
            # a name no node reported does not become a tag
            picker.click()
            typing.press_sequentially("flipper_lenght_mm")
            typing.press("Tab")
            expect(tags).to_have_count(2)
            picker.click()  # the typed name is still there, not a tag
            expect(typing).to_have_value("flipper_lenght_mm")
            typing.fill("")
            typing.press("Tab")  # leave the picker: on blur it folds, moving what is below it
            expect(typing).to_be_hidden()
            shots.append(_shot(builder, "builder-1-form.png"))

            # the kernel holds what was clicked: "Copy as code" writes the call into a new cell
            builder.locator(".v6nb-code-button").click()
            code = builder.locator(".v6nb-code textarea")
            expect(code).to_have_value(
                re.compile(r"'columns': \['bill_length_mm', 'body_mass_g'\]")
            )
            expect(code).to_have_value(re.compile(r"image='v6nb/summary'"))
            expect(
                page.locator(
                    ".jp-CodeCell .jp-InputArea-editor", has_text="task = client.task.create("
                )
            ).to_have_count(1)

            builder.locator(".v6nb-run-button").click()
            monitor = builder.locator(".v6nb-task-monitor")
            expect(monitor).to_be_visible(timeout=TASK_S)
            table = builder.locator(".v6nb-result-table")
            expect(table).to_be_visible(timeout=TASK_S)  # once every run is final and completed
            expect(table).to_contain_text("bill_length_mm")
            expect(table).to_contain_text("body_mass_g")
            statuses = monitor.locator(".v6nb-status")
            assert statuses.count() == 3  # the central run + a partial run per ticked organization
            assert set(statuses.evaluate_all("els => els.map(e => e.dataset.status)")) == {
                "completed"
            }
            rows = monitor.locator("tr.v6nb-run")
            ran_at = {rows.nth(i).locator("td").first.inner_text() for i in range(rows.count())}
            assert ran_at == {"Leiden", "Utrecht"}
            expect(monitor).to_contain_text("3/3")
            shots.append(_shot(builder, "builder-2-completed.png"))

            # (2) a bad column: told beside the field and on Run, and no task is created
            before = _task_count(page)
            _run(page, "checker")
            checker = _cell(page, "checker").locator(".v6nb-task-builder")
            expect(checker).to_be_visible(timeout=CELLS_S)
            crosstab = f"{known_algorithms()['v6nb/crosstab'].name} (v6nb/crosstab)"
            checker.locator("select").filter(
                has=page.locator("option", has_text=crosstab)
            ).select_option(label=crosstab)
            row = checker.locator(".v6nb-arg-row")
            expect(row.locator("datalist option[value='species']")).to_be_attached()
            row.locator("input").press_sequentially("specis")
            expect(row).to_contain_text("specis", timeout=CELLS_S)
            expect(row).to_contain_text("did you mean 'species'?")
            checker.locator(".v6nb-arg-col input").press_sequentially("sex")
            checker.locator(".v6nb-run-button").click()
            errors = checker.locator(".v6nb-errors")
            expect(errors).to_contain_text("specis", timeout=CELLS_S)
            expect(checker.locator(".v6nb-task-monitor")).to_have_count(0)
            shots.append(_shot(checker, "builder-3-bad-column.png"))
            assert _task_count(page) == before

            # ... and from code: the check before sending raises a readable error
            _run(page, "typo")
            typo = _cell(page, "typo")
            error = typo.locator(".jp-OutputArea-output")
            expect(error).to_contain_text("did you mean 'bill_length_mm'?", timeout=CELLS_S)
            expect(error).to_contain_text("bill_lenght_mm")
            expect(error).not_to_contain_text("Traceback")
            expect(typo.locator(".v6nb-task-monitor")).to_have_count(0)
            shots.append(_shot(typo, "builder-4-typo-error.png"))
            assert _task_count(page) == before

            # (3) a blocked analysis.summary shows the live monitor while the cell runs
            _run(page, "offline")
            expect(_cell(page, "offline")).to_contain_text(
                "Groningen's node stopped", timeout=CELLS_S
            )
            _run(page, "blocked")
            blocked = _cell(page, "blocked")
            live = blocked.locator(".v6nb-task-monitor")
            expect(live).to_be_visible(timeout=TASK_S)
            # Groningen's part waits for its node: the cell cannot end until the test lets it
            expect(live.locator(".v6nb-node-offline")).to_contain_text("is offline", timeout=TASK_S)
            expect(blocked.locator(".jp-InputPrompt")).to_contain_text("[*]")
            expect(live.locator(".v6nb-status[data-status='completed']").first).to_be_visible()
            # no event comes while the run waits, yet the monitor's clock moves on
            expect(live.locator(".widget-label", has_text="elapsed")).to_have_text(
                re.compile(r"elapsed ([2-9]\.\d s|\d\d+\.\d s|\d+ min)"), timeout=TASK_S
            )
            shots.append(_shot(blocked, "builder-5-blocked-wait.png"))

            (work / RESTART_FLAG).touch()
            expect(blocked.locator(".jp-InputPrompt")).not_to_contain_text("*", timeout=TASK_S)
            expect(live).to_contain_text("4/4")
            done = live.locator(".v6nb-status")
            assert set(done.evaluate_all("els => els.map(e => e.dataset.status)")) == {"completed"}
            expect(live.locator(".v6nb-node-offline")).to_have_count(0)
            expect(blocked.locator(".jp-OutputArea-output").last).to_contain_text("body_mass_g")
            shots.append(_shot(blocked, "builder-6-wait-completed.png"))

            kernel_eval(page, "net.stop()")
        finally:
            browser.close()
    for path in shots:
        assert path.stat().st_size > 5_000, path
