"""nbs/explore.ipynb as a person uses it: JupyterLab on localhost, the notebook opened in headless Chromium, Run All, the
widgets rendered without errors, one query typed and searched by hand; a screenshot goes to reports/explore_browser.png.
Needs jupyterlab, selenium and Debian's chromium + chromium-driver (`apt-get install chromium chromium-driver`)."""
import importlib.util, json, os, secrets, shutil, signal, socket, subprocess, sys, time, urllib.request
from pathlib import Path

import pytest

from helpers import ENV, pretrain_args, run_cli

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
_missing = [what for what, ok in [("chromium (apt-get install chromium)", CHROMIUM), ("chromedriver (apt-get install chromium-driver)", CHROMEDRIVER),
                                  ("jupyterlab (pip install jupyterlab)", importlib.util.find_spec("jupyterlab")),
                                  ("selenium (pip install selenium)", importlib.util.find_spec("selenium"))] if not ok]
pytestmark = pytest.mark.skipif(bool(_missing), reason=f"browser test needs {', '.join(_missing)}")

# JupyterLab settings for a deterministic page: every cell in the DOM (no windowed notebook), no news pop-up
LAB_SETTINGS = {"@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
                "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False}}


def free_port() -> int:
    "A TCP port free on localhost now."
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


def wait_until(check, timeout: float, what: str, interval: float = 0.5):
    "Poll `check()` until it returns something truthy; fail naming `what` after `timeout` seconds."
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = check()
        if got: return got
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture(scope="module")
def lab_root(tiny_bench, tmp_path_factory):
    "A folder holding explore.ipynb with the tiny benchmark and a 2-step tiny pre-training run injected as parameters."
    import papermill as pm
    d = tmp_path_factory.mktemp("lab")
    r = run_cli(pretrain_args(tiny_bench, d / "pt", "train.max_steps=2"))
    assert r.returncode == 0, r.stderr[-3000:]
    root = d / "root"; root.mkdir()
    pm.execute_notebook(str(REPO / "nbs" / "explore.ipynb"), str(root / "explore.ipynb"), prepare_only=True, log_output=False,
                        parameters={"data_root": str(tiny_bench), "checkpoint": str(d / "pt"), "query": "a red circle"})
    return root


@pytest.fixture(scope="module")
def lab_url(lab_root, tmp_path_factory):
    "A JupyterLab server on a free localhost port serving `lab_root` (token auth with a random token); yields its base URL."
    d = tmp_path_factory.mktemp("labconf")
    for name, value in LAB_SETTINGS.items():
        (d / "settings" / name).parent.mkdir(parents=True, exist_ok=True); (d / "settings" / name).write_text(json.dumps(value))
    port, token = free_port(), secrets.token_hex(16)
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
           f"--ServerApp.token={token}", f"--ServerApp.root_dir={lab_root}", "--ServerApp.allow_root=True",
           "--LabApp.expose_app_in_browser=True", f"--LabApp.user_settings_dir={d / 'settings'}",
           f"--LabApp.workspaces_dir={d / 'workspaces'}", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    env = {**ENV, "JUPYTER_CONFIG_DIR": str(d / "config"), "JUPYTER_RUNTIME_DIR": str(d / "runtime")}
    log = open(d / "server.log", "w")
    server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"

    def up():
        if server.poll() is not None: raise AssertionError(f"jupyterlab exited: {(d / 'server.log').read_text()[-3000:]}")
        try: return urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2).status == 200
        except OSError: return False
    try:
        wait_until(up, 60, "the JupyterLab server")
        yield f"{base}/lab/tree/explore.ipynb?reset&token={token}"
    finally:
        os.killpg(server.pid, signal.SIGTERM)                                   # the server and the kernels it started
        try: server.wait(20)
        except subprocess.TimeoutExpired: os.killpg(server.pid, signal.SIGKILL)
        log.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    "Headless Chromium through Debian's chromedriver (nothing is downloaded)."
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1800",
              f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"): opts.add_argument(a)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_script_timeout(60)
    yield driver
    driver.quit()


NOTEBOOK_STATE = """
const nb = window.jupyterapp && window.jupyterapp.shell.currentWidget;
if (!nb || !nb.context || nb.context.path !== 'explore.ipynb' || !nb.sessionContext.session) return null;
const cells = [...Array(nb.content.model.cells.length).keys()].map(i => nb.content.model.cells.get(i));
const code = cells.filter(c => c.type === 'code');
const bad = code.flatMap(c => c.outputs.toJSON()).filter(o => o.output_type === 'error' || (o.output_type === 'stream' && o.name === 'stderr'));
const kernel = nb.sessionContext.session.kernel;
return {kernel: kernel ? kernel.status : 'none', cells: code.length, done: code.filter(c => c.executionCount !== null).length,
        errors: bad.map(o => o.output_type === 'error' ? o.ename + ': ' + o.evalue : o.text)};
"""
DOM_ERRORS = """
return [...document.querySelectorAll('[data-mime-type="application/vnd.jupyter.error"], [data-mime-type="application/vnd.jupyter.stderr"]')]
       .map(e => e.innerText.slice(-1500));
"""


def notebook_state(driver) -> dict | None:
    "Kernel status, code cells run, and the error / stderr outputs of the open notebook (from JupyterLab's model)."
    return driver.execute_script(NOTEBOOK_STATE)


def assert_no_errors(driver, state: dict):
    "No error or stderr output, in the cells or inside the widgets' outputs."
    assert not state["errors"], state["errors"]
    assert not driver.execute_script(DOM_ERRORS), driver.execute_script(DOM_ERRORS)


def test_explore_runs_in_jupyterlab(lab_url, browser):
    from selenium.webdriver.common.by import By
    browser.get(lab_url)
    wait_until(lambda: (s := notebook_state(browser)) and s["kernel"] == "idle", 90, "the notebook open with an idle kernel")
    browser.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells')")

    def finished():
        s = notebook_state(browser)
        if s["errors"] or browser.execute_script(DOM_ERRORS): return s           # fail at once, with the message
        return s if s["done"] == s["cells"] and s["kernel"] == "idle" else None
    assert_no_errors(browser, wait_until(finished, 150, "Run All to finish", interval=1))

    css = lambda sel: browser.find_elements(By.CSS_SELECTOR, sel)
    wait_until(lambda: css(".snps3-results img"), 30, "the default query's result figure in the widgets")
    assert css(".jp-OutputArea-output .jupyter-widgets"), "no widget view rendered"
    assert len(css(".widget-slider")) >= 2 and css(".widget-dropdown") and css(".widget-html mark"), "browse / ranking widgets missing"
    assert len(css(".widget-output img")) >= 4, "too few figures inside the widgets' outputs"

    # a person's query: type it, press Search, see the results change
    box = css(".snps3-query input")[0]
    box.clear(); box.send_keys("a big blue star")
    wait_until(lambda: "look for a big blue star" in css(".snps3-status")[0].text, 30, "the kernel to echo the typed query")
    css("button.snps3-search")[0].click()
    wait_until(lambda: "clips for a big blue star" in css(".snps3-status")[0].text, 60, "the typed query's results and attention maps")
    assert "query: a big blue star" in css(".snps3-results")[0].text and css(".snps3-results img")
    assert_no_errors(browser, wait_until(lambda: (s := notebook_state(browser))["kernel"] == "idle" and s, 30, "an idle kernel"))

    browser.execute_script("document.querySelector('.snps3-query').scrollIntoView({block: 'start'})")
    wait_until(lambda: browser.execute_script("return [...document.images].every(i => i.complete)"), 10, "the images to load")
    time.sleep(0.5)
    out = REPO / "reports" / "explore_browser.png"
    out.parent.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(out)) and out.stat().st_size > 10_000
