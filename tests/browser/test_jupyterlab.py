"""02-widgets in a real JupyterLab, driven by Playwright with Debian's Chromium, against a real demo network."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import requests

from tests.support import free_port, unavailable, wait_for

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# upper bounds so a broken page fails instead of hanging (not speed checks)
SERVER_START_S = 120
CELLS_S = 240_000  # milliseconds, Playwright's unit
TASK_S = 180_000

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


def _kill_demo_processes(tmp: Path) -> None:
    """Safety net: stop demo processes left behind by this test's kernel (their cwd is under ``tmp``)."""
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            cwd = os.readlink(pid_dir / "cwd")
        except OSError:
            continue
        if cwd.startswith(str(tmp)) and int(pid_dir.name) != os.getpid():
            try:
                os.kill(int(pid_dir.name), signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def jupyterlab(tmp_path):
    work = tmp_path / "work"
    scratch = tmp_path / "tmp"  # TMPDIR: the kernel's demo network lives (and is found) under it
    for d in (work, scratch, tmp_path / "home", tmp_path / "runtime", tmp_path / "config"):
        d.mkdir()
    _notebook_copy(work)
    # no "get Jupyter news?" toast over the widgets (and no fetching of news)
    news = tmp_path / "config" / "lab-settings" / "@jupyterlab" / "apputils-extension"
    news.mkdir(parents=True)
    (news / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("V6NB_")}
    env.update(
        HOME=str(tmp_path / "home"),
        TMPDIR=str(scratch),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
        JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
        JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "config" / "lab-settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "config" / "lab-workspaces"),
    )
    cmd = [
        sys.executable, "-m", "jupyter", "lab",
        "--no-browser", "--ip=127.0.0.1", f"--port={port}", f"--ServerApp.root_dir={work}",
        "--IdentityProvider.token=", "--ServerApp.password=", "--ServerApp.disable_check_xsrf=True",
        "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly", "--allow-root",
    ]  # fmt: skip
    log = open(tmp_path / "jupyterlab.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            try:
                return requests.get(f"{url}/api/status", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        def alive() -> None:
            assert proc.poll() is None, (tmp_path / "jupyterlab.log").read_text()[-3000:]

        wait_for(up, SERVER_START_S, "JupyterLab to answer", interval=0.3, check=alive)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()
        _kill_demo_processes(scratch)


def _loopback_only(route) -> None:
    # the page must not reach anything but our JupyterLab on 127.0.0.1
    if route.request.url.startswith(("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:")):
        route.continue_()
    else:
        route.abort()


def test_widgets_notebook_runs_and_task_builder_completes(jupyterlab):
    from playwright.sync_api import expect, sync_playwright

    artifacts = ROOT / "artifacts"
    artifacts.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            page.route("**/*", _loopback_only)
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
            table = builder.locator(".v6nb-result-table table")
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
