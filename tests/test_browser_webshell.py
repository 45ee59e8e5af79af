"""The web shell in a real headless Chromium (Debian's package, driven by Playwright).

Open the page with the token, type a scan, see its table in the terminal and its curve in the
plot; press Ctrl-C during a long scan and see it aborted. Screenshots go to test-artifacts/.
Chromium missing: these tests FAIL with the command to install it, unless
BLISSNG_SKIP_BROWSER=1 says to skip them (never silently).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from blissng.config import Config
from blissng.redisdb import RedisUrls
from blissng.session import Session
from blissng.shell.consoles import ShellHub
from blissng.web.app import create_app, missing_vendor_files
from blissng.web.security import WebSecurity
from blissng.web.testing import ServerThread

pytestmark = pytest.mark.browser

TOKEN = "browser-token"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

CONFIG = """
- name: motors
  class: MockupController
  instant: true
  axes:
    - name: m1
    - name: m2
- name: sim
  class: SimCounterController
  sampling_period: 0.001
  counters:
    - name: diode
      motor: $m1
      center: 1.0
      fwhm: 0.5
      height: 100
      nsamples: 1
"""


# Module scope, not session: Playwright's sync API marks an event loop as running in the main
# thread while it is open, which breaks every async test that runs after it (anyio's runner
# refuses to start). Closing it at the end of this module keeps the rest of the suite sound.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = shutil.which("chromium")
    if executable is None:
        if os.environ.get("BLISSNG_SKIP_BROWSER") == "1":
            pytest.skip("BLISSNG_SKIP_BROWSER=1: browser tests opted out")
        pytest.fail(
            "Chromium is missing: run 'sudo apt-get install -y chromium' (or `make chromium`), "
            "or set BLISSNG_SKIP_BROWSER=1 to opt out of the browser tests"
        )
    missing = missing_vendor_files()
    if missing:
        pytest.fail(f"the browser client's files are missing ({missing}): run `make webshell`")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def served(
    write_config: Any, config_dir: Path, redis_urls: RedisUrls, tmp_path: Path
) -> Iterator[ServerThread]:
    write_config("beamline.yml", CONFIG)
    session = Session(
        "demo",
        config=Config(config_dir),
        redis=redis_urls,
        scan_saving={"base_path": str(tmp_path / "data")},
    )
    app = create_app(
        ShellHub(log_dir=tmp_path / "logs"),
        security=WebSecurity(token=TOKEN),
        sessions=[session],
        data_url=redis_urls.data,
    )
    with ServerThread(app, port=0) as server:
        yield server


@pytest.fixture
def page(browser: Any, served: ServerThread) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 800})
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(f"{served.base_url}/?token={TOKEN}")
    try:
        yield page
    finally:
        context.close()


def terminal_text(page: Any) -> str:
    return str(page.locator("blissng-shell .xterm-rows").inner_text())


def wait_terminal(page: Any, text: str, timeout: float = 30_000) -> None:
    page.wait_for_function(
        "t => (document.querySelector('blissng-shell .xterm-rows')||{}).innerText?.includes(t)",
        arg=text,
        timeout=timeout,
    )


def type_command(page: Any, command: str) -> None:
    page.locator("blissng-shell .xterm").click()
    page.keyboard.type(command)
    page.keyboard.press("Enter")


@pytest.mark.timeout(120)
def test_a_scan_typed_in_the_browser_shows_its_table_and_curve(page: Any) -> None:
    assert page.url.endswith("/")  # the token went into a cookie, out of the address bar
    wait_terminal(page, "demo [1]:")
    type_command(page, "ascan(m1, 0, 2, 10, 0.01, diode)")
    plot = page.locator("section[data-session=demo] .plot")
    page.wait_for_function(
        "() => document.querySelector('section[data-session=demo] .plot')"
        ".dataset.state === 'success'"
    )
    assert plot.get_attribute("data-points") == "11"
    wait_terminal(page, "demo [2]:")
    text = terminal_text(page)
    assert "diode" in text and "m1" in text
    assert page.locator("section[data-session=demo] .plot canvas").count() >= 1
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "webshell-ascan.png"))


@pytest.mark.timeout(120)
def test_ctrl_c_in_the_browser_aborts_a_long_scan(page: Any) -> None:
    wait_terminal(page, "demo [1]:")
    type_command(page, "loopscan(100000, 0.01, sim)")
    page.wait_for_selector("blissng-shell[data-busy='1']")
    page.wait_for_function(
        "() => +document.querySelector('section[data-session=demo] .plot').dataset.points > 5"
    )
    page.keyboard.press("Control+C")
    page.wait_for_selector("blissng-shell[data-busy='0']")
    wait_terminal(page, "KeyboardInterrupt")
    page.wait_for_function(
        "() => document.querySelector('section[data-session=demo] .plot')"
        ".dataset.state === 'aborted'"
    )
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "webshell-ctrl-c.png"))


@pytest.mark.timeout(120)
def test_a_second_browser_watches_a_console_read_only(
    browser: Any, page: Any, served: ServerThread
) -> None:
    wait_terminal(page, "demo [1]:")
    console_id = page.locator("blissng-shell").get_attribute("data-console")
    assert console_id
    viewer_context = browser.new_context(viewport={"width": 1000, "height": 700})
    try:
        viewer = viewer_context.new_page()
        viewer.set_default_timeout(30_000)
        # the viewer has the token too (its cookie), then opens the watch link
        viewer_context.request.get(f"{served.base_url}/?token={TOKEN}", max_redirects=0)
        viewer.goto(f"{served.base_url}/#demo/view/{console_id}")
        assert viewer.locator("blissng-shell").get_attribute("mode") == "view"
        wait_terminal(viewer, "demo [1]:")
        type_command(page, "print('shown-to-' + 'the-viewer')")
        wait_terminal(viewer, "shown-to-the-viewer")
        # the viewer's keystrokes go nowhere
        type_command(viewer, "viewer_typed = 1")
        type_command(page, "'viewer_typed' in dir()")
        wait_terminal(page, "False")
        assert "viewer_typed = 1" not in terminal_text(page)
        ARTIFACTS.mkdir(exist_ok=True)
        viewer.screenshot(path=str(ARTIFACTS / "webshell-viewer.png"))
    finally:
        viewer_context.close()


@pytest.mark.timeout(120)
def test_a_mesh_is_drawn_as_a_map(page: Any) -> None:
    wait_terminal(page, "demo [1]:")
    type_command(page, "amesh(m1, 0, 2, 10, m2, 0, 2, 10, 0.001, diode)")
    page.wait_for_function(
        "() => document.querySelector('section[data-session=demo] .plot')"
        ".dataset.state === 'success'"
    )
    # the peak (m1 = 1) is painted hotter than the corner (m1 = 0)
    hot, cold = page.evaluate(
        """() => {
            const c = document.querySelector('section[data-session=demo] canvas.mesh');
            const ctx = c.getContext('2d');
            const at = (fx, fy) => Array.from(ctx.getImageData(
                Math.floor(fx * (c.width - 1)), Math.floor(fy * (c.height - 1)), 1, 1).data);
            return [at(0.5, 0.5), at(0.01, 0.99)];
        }"""
    )
    assert hot != cold and hot[0] > hot[2] and cold[2] > cold[0]  # red-ish vs blue-ish
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "webshell-mesh.png"))


@pytest.fixture
def served_with_mca(
    sims: Any, write_config: Any, config_dir: Path, redis_urls: RedisUrls, tmp_path: Path
) -> Iterator[ServerThread]:
    from blissng.sim.addresses import register_simulators, unregister_simulators

    register_simulators(sims.urls)
    write_config(
        "detectors.yml",
        "- name: mca\n  class: SimMca\n  url: sim://mca\n  nbins: 1024\n"
        "- name: camera\n  class: SimCamera\n  url: sim://camera\n",
    )
    session = Session(
        "demo",
        config=Config(config_dir),
        redis=redis_urls,
        scan_saving={"base_path": str(tmp_path / "data")},
    )
    app = create_app(
        ShellHub(log_dir=tmp_path / "logs"),
        security=WebSecurity(token=TOKEN),
        sessions=[session],
        data_url=redis_urls.data,
    )
    try:
        with ServerThread(app, port=0) as server:
            yield server
    finally:
        unregister_simulators(list(sims.urls))


@pytest.mark.timeout(120)
def test_an_mca_spectrum_and_a_camera_frame_on_demand(
    browser: Any, served_with_mca: ServerThread
) -> None:
    context = browser.new_context(viewport={"width": 1400, "height": 800})
    try:
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.goto(f"{served_with_mca.base_url}/?token={TOKEN}")
        wait_terminal(page, "demo [1]:")
        type_command(page, "loopscan(3, 0.01, mca, camera)")
        page.wait_for_function(
            "() => document.querySelector('section[data-session=demo] .plot')"
            ".dataset.state === 'success'"
        )
        page.locator("button.spectrum-button[data-channel='mca:spectrum']").click()
        area = page.locator("section[data-session=demo] .spectrum-area")
        page.wait_for_function(
            "() => document.querySelector('section[data-session=demo] .spectrum-area')"
            ".dataset.index === '2'"
        )
        assert area.locator("canvas").count() >= 1
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "webshell-mca.png"))
        page.locator("button.spectrum-button[data-channel^='camera']").click()
        page.wait_for_selector("section[data-session=demo] .spectrum-area canvas.frame")
        lit = page.evaluate(
            """() => {
                const c = document.querySelector('section[data-session=demo] canvas.frame');
                const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                let n = 0;
                for (let i = 0; i < d.length; i += 4) if (d[i] > 0) n++;
                return n;
            }"""
        )
        assert lit > 0
        page.screenshot(path=str(ARTIFACTS / "webshell-camera.png"))
    finally:
        context.close()


@pytest.mark.timeout(120)
def test_the_shell_embedded_in_another_web_application(browser: Any, tmp_path: Path) -> None:
    """A GUI served from another origin embeds <blissng-shell>: allowed by the server's
    origin list; a GUI not on the list is refused."""
    import functools
    import http.server
    import threading

    from blissng.shell.session import SimpleSession

    def gui_server(directory: Path) -> http.server.ThreadingHTTPServer:
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        return httpd

    allowed_dir, other_dir = tmp_path / "gui", tmp_path / "other"
    allowed_dir.mkdir()
    other_dir.mkdir()
    allowed, other = gui_server(allowed_dir), gui_server(other_dir)
    try:
        origin = f"http://127.0.0.1:{allowed.server_address[1]}"
        app = create_app(
            ShellHub(log_dir=tmp_path / "logs"),
            security=WebSecurity(token=TOKEN, allowed_origins=frozenset({origin})),
            sessions=[SimpleSession("embedded")],
        )
        with ServerThread(app, port=0) as served:
            page_html = (
                "<!doctype html><title>another GUI</title><h1>Beamline GUI</h1>"
                f'<script src="{served.base_url}/static/blissng-shell.js"></script>'
                f'<blissng-shell session="embedded" server="{served.base_url}" token="{TOKEN}"'
                ' style="height: 400px"></blissng-shell>'
            )
            for directory in (allowed_dir, other_dir):
                (directory / "index.html").write_text(page_html)
            context = browser.new_context(viewport={"width": 1000, "height": 600})
            try:
                page = context.new_page()
                page.set_default_timeout(30_000)
                page.goto(f"{origin}/index.html")
                wait_terminal(page, "embedded [1]:")
                type_command(page, "print('inside-' + 'the-gui')")
                wait_terminal(page, "inside-the-gui")
                ARTIFACTS.mkdir(exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / "webshell-embedded.png"))

                refused = context.new_page()
                refused.goto(f"http://127.0.0.1:{other.server_address[1]}/index.html")
                refused.evaluate(
                    """() => new Promise(resolve => document.querySelector('blissng-shell')
                        .addEventListener('blissng-closed', resolve, { once: true }))"""
                )
                assert refused.locator("blissng-shell").get_attribute("data-console") is None
            finally:
                context.close()
    finally:
        allowed.shutdown()
        other.shutdown()


def _terminal_size() -> str:
    from blissng.shell.builtins import current_console

    console = current_console.get()
    assert console is not None
    return f"SIZE={console.size.rows}x{console.size.columns}"


@pytest.mark.timeout(120)
def test_the_console_follows_the_browser_window_size(browser: Any, tmp_path: Path) -> None:
    import re

    from blissng.shell.session import SimpleSession

    app = create_app(
        ShellHub(log_dir=tmp_path / "logs"),
        security=WebSecurity(token=TOKEN),
        sessions=[SimpleSession("sized", {"term_size": _terminal_size})],
    )
    with ServerThread(app, port=0) as served:
        context = browser.new_context(viewport={"width": 1400, "height": 800})
        try:
            page = context.new_page()
            page.set_default_timeout(30_000)
            page.goto(f"{served.base_url}/?token={TOKEN}")
            wait_terminal(page, "sized [1]:")

            def reported_size(count: int) -> tuple[int, int]:
                """Run term_size() (the count-th time) and read what the console reports."""
                type_command(page, "term_size()")
                page.wait_for_function(
                    "n => (document.querySelector('blissng-shell .xterm-rows').innerText"
                    ".match(/SIZE=\\d+x\\d+/g) || []).length >= n",
                    arg=count,
                )
                rows, columns = re.findall(r"SIZE=(\d+)x(\d+)", terminal_text(page))[-1]
                return int(rows), int(columns)

            big = reported_size(1)
            page.set_viewport_size({"width": 900, "height": 500})
            type_command(page, "")  # the resize reaches the server before the next command
            small = reported_size(2)
            assert small[0] < big[0] and small[1] < big[1], (big, small)
        finally:
            context.close()
