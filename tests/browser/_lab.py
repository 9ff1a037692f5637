"""Shared helpers of the browser tests: a throw-away JupyterLab server, Chromium, and a notebook's kernel."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from tests.support import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"  # scripts/test.sh creates it; CI keeps it
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

# the open notebook's kernel (JupyterLab exposes its app with --LabApp.expose_app_in_browser)
_KERNEL = "window.jupyterapp.shell.currentWidget.sessionContext.session.kernel"
_EVAL_JS = (
    "async (code) => {"
    f" const future = {_KERNEL}.requestExecute({{code, store_history: false}});"
    " let out = '';"
    " future.onIOPub = (msg) => {"
    "  const kind = msg.header.msg_type;"
    "  if (kind === 'stream') out += msg.content.text;"
    "  else if (kind === 'error') out += msg.content.ename + ': ' + msg.content.evalue;"
    " };"
    " await future.done;"
    " return out;"
    "}"
)


def kill_demo_processes(tmp: Path) -> None:
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


@contextmanager
def running_lab(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A JupyterLab server on loopback with its own home and settings; yields (url, root folder).

    Its kernels get ``TMPDIR`` under ``tmp_path``: demo networks started there are killed at the end.
    """
    work = tmp_path / "work"
    scratch = tmp_path / "tmp"  # TMPDIR: the kernel's demo network lives (and is found) under it
    for d in (work, scratch, tmp_path / "home", tmp_path / "runtime", tmp_path / "config"):
        d.mkdir()
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
        yield url, work
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()
        kill_demo_processes(scratch)


def loopback_only(route: Any) -> None:
    """Playwright route handler: the page must not reach anything but our JupyterLab on 127.0.0.1."""
    if route.request.url.startswith(("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:")):
        route.continue_()
    else:
        route.abort()


def open_notebook(browser: Any, url: str, name: str, *, height: int = 1800) -> Any:
    """A page showing notebook ``name`` with its kernel started; returns the page once it is ready."""
    page = browser.new_page(viewport={"width": 1400, "height": height})
    page.route("**/*", loopback_only)
    page.goto(f"{url}/lab/tree/{name}")
    page.wait_for_function(
        f"() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
        f" && window.jupyterapp.shell.currentWidget.sessionContext"
        f" && window.jupyterapp.shell.currentWidget.sessionContext.session"
        f" && {_KERNEL}",
        timeout=CELLS_S,
    )
    page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.ready")
    return page


def run_cell(page: Any, index: int) -> None:
    """Run cell ``index`` of the open notebook as a click on Run would (returns at once)."""
    page.evaluate(
        "(i) => { const nb = window.jupyterapp.shell.currentWidget;"
        " nb.content.activeCellIndex = i;"
        " window.jupyterapp.commands.execute('notebook:run-cell'); return null; }",
        index,
    )


def kernel_eval(page: Any, code: str) -> str:
    """Run ``code`` in the open notebook's kernel (queued after running cells); its printed text."""
    return str(page.evaluate(_EVAL_JS, code))


def cell(page: Any, index: int) -> Any:
    """The locator of cell ``index`` of the open notebook."""
    return page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell").nth(index)
