"""The diversity explorer (notebook 08) in JupyterLab, in a real Chromium.

A plotly/anywidget/ipywidgets version mismatch still passes a headless papermill run,
so this test looks at the widgets where a learner does:

1. copy notebook 08 into a temp folder with ``SMOKE=True, INTERACTIVE=True`` injected;
2. start JupyterLab on a free localhost port with a token (news, update checks and
   cell windowing off, settings and workspaces in the temp folder);
3. open the notebook in Debian's Chromium through Playwright, run all cells, and wait
   until every code cell has run without an error output;
4. check that the sliders are visible and the plotly ``FigureWidget`` is a drawn plot
   (``.js-plotly-plot`` with an SVG), not an error or a ``FigureWidget(...)`` text repr;
5. move the DDIM-steps slider with the keyboard and check that the trace data read
   from the DOM and the metric label both changed;
6. save a screenshot of the explorer in the test's temp folder; with
   ``REACTDIFF_WRITE_FIGURES=1`` (``make figures``) to the committed ``figures/explorer.png``.

Without Chromium (``make browser-deps`` installs it) the test skips, saying why;
with ``REACTDIFF_REQUIRE_BROWSER=1`` (set by ``.ci/run``) it fails instead.
Playwright never downloads a browser here: it drives ``/usr/bin/chromium``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "08_diversity_explorer.ipynb"
FIGURE = ROOT / "figures" / "explorer.png"  # rewritten only on purpose: REACTDIFF_WRITE_FIGURES=1
WRITE_FIGURES = os.environ.get("REACTDIFF_WRITE_FIGURES") == "1"
REQUIRE = os.environ.get("REACTDIFF_REQUIRE_BROWSER") == "1"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
# JupyterLab user settings for the test: no news or update toasts over the cells, and every
# cell attached to the DOM (windowing would detach the explorer's output when it scrolls away).
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}

pytestmark = pytest.mark.browser


def find_chromium() -> str | None:
    """Chromium from ``$REACTDIFF_CHROMIUM`` or the PATH (Debian installs /usr/bin/chromium)."""
    for candidate in (os.environ.get("REACTDIFF_CHROMIUM"), "chromium", "chromium-browser"):
        if candidate and (path := shutil.which(candidate)):
            return path
    return None


def unavailable(reason: str) -> None:
    """Skip with ``reason``, or fail when CI requires the browser test."""
    if REQUIRE:
        pytest.fail(f"REACTDIFF_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(f"real-browser widget test skipped: {reason}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare_notebook(src: Path, folder: Path, **parameters) -> Path:
    """Copy ``src`` into ``folder`` with ``parameters`` injected after its parameters cell
    (papermill's own injection, so the notebook sees exactly what CI would give it)."""
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    nb = parameterize_notebook(load_notebook_node(str(src)), parameters, kernel_name="python3")
    dest = folder / src.name
    nbformat.write(nb, dest)
    return dest


@contextlib.contextmanager
def jupyterlab(root: Path, timeout: float = 60.0) -> Iterator[str]:
    """Run JupyterLab serving ``root`` on a free localhost port; yield its base URL with the
    token as a query. The server (and its kernels) is always shut down afterwards."""
    port, token = free_port(), os.urandom(16).hex()
    state = root.parent / f"{root.name}-lab-state"
    for name, value in LAB_SETTINGS.items():
        path = state / "settings" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))
    env = dict(
        os.environ,
        JUPYTER_RUNTIME_DIR=str(state / "runtime"),
        JUPYTER_CONFIG_DIR=str(state / "config"),
        JUPYTER_PLATFORM_DIRS="1",
    )
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        f"--port={port}",
        "--ip=127.0.0.1",
        "--port-retries=0",
        "--ServerApp.open_browser=False",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        f"--LabApp.user_settings_dir={state / 'settings'}",
        f"--LabApp.workspaces_dir={state / 'workspaces'}",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.expose_app_in_browser=True",
        "--ServerApp.terminals_enabled=False",
    ] + (["--allow-root"] if os.geteuid() == 0 else [])  # CI containers run as root
    log = (state / "server.log").open("w")
    server = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {server.returncode}:\n{(state / 'server.log').read_text()}")
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                log_text = (state / "server.log").read_text()
                raise TimeoutError(f"JupyterLab did not answer within {timeout} s:\n{log_text}")
            time.sleep(0.5)
        yield f"{base}/lab/tree/{{path}}?token={token}&reset"
    finally:
        server.terminate()  # SIGTERM: jupyter_server shuts its kernels down and exits
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


# Inside the page, through window.jupyterapp (exposed by --LabApp.expose_app_in_browser):
# the current notebook's cells as [{type, count, errors}] so the test can wait for them.
CELL_STATE_JS = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  if (!panel || !panel.content || !panel.content.model) return null;
  const cells = [];
  for (const cell of panel.content.model.cells) {
    const j = cell.toJSON();
    const errors = (j.outputs || []).filter(o => o.output_type === 'error')
      .map(o => o.ename + ': ' + o.evalue);
    cells.push({type: j.cell_type, count: j.execution_count ?? null, errors});
  }
  return cells;
}"""

TRACES_JS = """el => JSON.stringify((el.data || []).map(t => [t.name, t.visible, t.x, t.y, t.z, t.source]))"""
# Scatter traces in the DOM whose x or y is missing or of unequal length: a figure whose data was
# lost on its way to the browser (e.g. updated before display, plotly.py #4998) still draws axes.
BROKEN_TRACES_JS = """el => (el.data || []).map((t, i) => [i, t.type, t.x && t.x.length, t.y && t.y.length])
  .filter(([i, type, nx, ny]) => type === 'scatter' && !(nx > 0 && nx === ny))"""


def wait_for(predicate, timeout: float, what: str, interval: float = 0.5):
    """Poll ``predicate`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def run_all_cells(page, timeout: float) -> None:
    """Run every cell of the open notebook and wait until each code cell has an
    execution count; fail at once on an error output, naming the cell."""
    page.wait_for_function(
        "() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
        " && window.jupyterapp.shell.currentWidget.sessionContext"
        " && window.jupyterapp.shell.currentWidget.sessionContext.session"
        " && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel"
        " && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.connectionStatus === 'connected'",
        timeout=60_000,
    )
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")

    def done():
        cells = page.evaluate(CELL_STATE_JS) or []
        code = [c for c in cells if c["type"] == "code"]
        for i, c in enumerate(code):
            assert not c["errors"], f"code cell {i} raised in JupyterLab: {c['errors']}"
        return code and all(c["count"] is not None for c in code)

    wait_for(done, timeout, "all notebook cells to finish running")


def figure_traces(page) -> str:
    return page.locator(".js-plotly-plot.explorer-figure").first.evaluate(TRACES_JS)


@pytest.mark.timeout(240)
def test_explorer_widgets_render_and_react(tmp_path):
    chromium = find_chromium()
    if chromium is None:
        unavailable("chromium not found on PATH; install it with `make browser-deps`")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("the playwright package is not installed (pip install -e '.[dev]')")
    assert NOTEBOOK.exists(), f"{NOTEBOOK.relative_to(ROOT)} is missing"

    root = tmp_path / "notebooks"
    root.mkdir()
    (tmp_path / "configs").symlink_to(ROOT / "configs")  # the notebook trains from ../configs
    nb = prepare_notebook(NOTEBOOK, root, SMOKE=True, INTERACTIVE=True, OUT_DIR=str(tmp_path / "out"))

    with jupyterlab(root) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1500, "height": 1900})
            page = context.new_page()
            try:
                page.goto(url.format(path=nb.name), timeout=60_000)
                run_all_cells(page, timeout=150)

                # The course's roadmap is drawn at the top, and the exercises' solutions come collapsed.
                roadmap = page.locator(".jp-CodeCell", has_text='roadmap("08")').first
                assert roadmap.locator(".jp-OutputArea-output img").count() == 1, "the roadmap figure is not drawn"
                solutions = sum("solution" in c.metadata.get("tags", []) for c in nbformat.read(nb, 4).cells)
                hidden = page.locator(".jp-InputPlaceholder").count()
                assert solutions >= 2 and hidden == solutions, f"{hidden} collapsed inputs, {solutions} solutions"

                # The widgets render: sliders visible, the figure drawn by plotly.js.
                steps = page.locator(".widget-slider", has_text="DDIM steps").first
                steps.wait_for(state="visible", timeout=30_000)
                assert page.locator(".widget-slider:visible").count() >= 4, "expected the explorer's sliders"
                outputs = page.locator(".jp-OutputArea-output")
                assert outputs.filter(has_text="FigureWidget(").count() == 0, "the figure shows as a text repr"
                assert outputs.filter(has_text="Error displaying widget").count() == 0, "a widget failed to display"
                plot = page.locator(".js-plotly-plot.explorer-figure").first
                plot.wait_for(state="visible", timeout=30_000)
                assert plot.locator(".main-svg").count() > 0, "plotly figure has no SVG: not drawn"
                broken = plot.evaluate(BROKEN_TRACES_JS)
                assert not broken, f"traces [index, type, len(x), len(y)] arrived without their data: {broken}"
                label = page.locator(".explorer-metrics").first
                label.wait_for(state="visible", timeout=10_000)
                traces, text = figure_traces(page), label.inner_text()
                assert "FRDiv" in text and "FRCorr" in text, f"metric label reads {text!r}"

                # Move the steps slider one notch with the keyboard; the figure must follow.
                readout = steps.locator(".widget-readout")
                before = readout.inner_text()
                steps.locator(".noUi-handle").first.focus()
                page.keyboard.press("ArrowRight")
                wait_for(lambda: readout.inner_text() != before, 10, "the steps slider readout to move")
                wait_for(lambda: figure_traces(page) != traces, 90, "the traces to change after the slider moved")
                wait_for(lambda: label.inner_text() != text, 30, "the metric label to change after the slider moved")
                assert not plot.evaluate(BROKEN_TRACES_JS), "traces lost their data after the update"

                shot = tmp_path / FIGURE.name
                page.locator(".explorer-app").first.screenshot(path=str(shot), timeout=30_000)
                if WRITE_FIGURES:
                    shutil.copyfile(shot, FIGURE)
            except BaseException:
                with contextlib.suppress(Exception):  # keep the original error if the browser is gone
                    page.screenshot(path=str(tmp_path / "failure.png"))
                print(
                    f"at failure: browser screenshot {tmp_path / 'failure.png'}, "
                    f"server log {tmp_path / 'notebooks-lab-state' / 'server.log'}"
                )
                raise
        finally:
            browser.close()
