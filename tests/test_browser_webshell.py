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
from blissng.shell import ShellHub
from blissng.web import ServerThread, WebSecurity, create_app, missing_vendor_files

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
    - name: mon
      height: 0
      background: 1000
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


PLOT = "section[data-session=demo] .plot"


def plot_data(page: Any, key: str) -> str:
    """A data attribute of the plot (what it shows: points, state, shown, drawn, ...)."""
    return str(page.locator(PLOT).get_attribute(f"data-{key}"))


def wait_plot(page: Any, condition: str, timeout: float = 30_000) -> None:
    """Until ``condition`` (JavaScript over ``d``, the plot's dataset) holds."""
    page.wait_for_function(
        f"() => {{ const d = document.querySelector('{PLOT}').dataset; return {condition}; }}",
        timeout=timeout,
    )


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
    plot = page.locator(PLOT)
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
    share = page.locator("button.share")
    share.click()  # the watch link, with its own read-only key (no token in it)
    page.wait_for_function("() => !!document.querySelector('button.share').dataset.link")
    link = share.get_attribute("data-link")
    assert link and f"/view/demo/{console_id}?key=" in link and TOKEN not in link
    viewer_context = browser.new_context(viewport={"width": 1000, "height": 700})
    try:
        viewer = viewer_context.new_page()  # another browser: no token, no cookie
        viewer.set_default_timeout(30_000)
        viewer.goto(link)
        assert viewer.locator("blissng-shell").get_attribute("mode") == "view"
        wait_terminal(viewer, "demo [1]:")
        type_command(page, "print('shown-to-' + 'the-viewer')")
        wait_terminal(viewer, "shown-to-the-viewer")
        # the viewer's keystrokes go nowhere
        type_command(viewer, "viewer_typed = 1")
        type_command(page, "'viewer_typed' in dir()")
        wait_terminal(page, "False")
        assert "viewer_typed = 1" not in terminal_text(page)
        # the key opens nothing else: not the page of another console, not the API
        other = viewer_context.request.get(link.replace(console_id, "other"))
        assert other.status == 403
        assert viewer_context.request.get(f"{served.base_url}/shell/sessions").status == 403
        ARTIFACTS.mkdir(exist_ok=True)
        viewer.screenshot(path=str(ARTIFACTS / "webshell-viewer.png"))
    finally:
        viewer_context.close()


@pytest.mark.timeout(120)
def test_devices_work_without_await_in_the_browser(page: Any) -> None:
    """Typed as BLISS users do: m1.move(1) blocks until the motor stopped."""
    wait_terminal(page, "demo [1]:")
    type_command(page, "m1.position")
    wait_terminal(page, "Out [1]: 0.0")
    type_command(page, "m1.move(1)")
    wait_terminal(page, "demo [3]:")
    type_command(page, "m1.position")
    wait_terminal(page, "Out [3]: 1.0")
    type_command(page, "wa()")
    wait_terminal(page, "demo [5]:")
    assert "!!!" not in terminal_text(page)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "webshell-move.png"))


@pytest.mark.timeout(120)
def test_a_mesh_is_drawn_as_a_map(page: Any) -> None:
    wait_terminal(page, "demo [1]:")
    type_command(page, "amesh(m1, 0, 2, 10, m2, 0, 2, 10, 0.001, sim)")
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
    assert plot_data(page, "mesh") == "11x11"  # the scan's own grid
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "webshell-mesh.png"))
    # any counter: the flat monitor paints the map in one colour
    page.locator(f"{PLOT} select.mesh-counter").select_option("sim:mon")
    wait_plot(page, "d.meshCounter === 'sim:mon'")
    centre = page.evaluate(
        """() => {
            const c = document.querySelector('section[data-session=demo] canvas.mesh');
            return Array.from(c.getContext('2d').getImageData(
                Math.floor(c.width / 2), Math.floor(c.height / 2), 1, 1).data);
        }"""
    )
    assert centre[2] > centre[0]  # blue: no peak in the monitor


@pytest.fixture
def served_with_mca(
    sims: Any, write_config: Any, config_dir: Path, redis_urls: RedisUrls, tmp_path: Path
) -> Iterator[ServerThread]:
    from blissng.comm import register_simulators, unregister_simulators

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
        type_command(page, "loopscan(30, 0.1, mca, camera)")
        # clicked while the scan runs: the spectrum follows the scan to its last point
        page.locator("button.spectrum-button[data-channel='mca:spectrum']").click()
        page.evaluate(
            """() => {
                const area = document.querySelector('section[data-session=demo] .spectrum-area');
                window.shownIndices = [];
                new MutationObserver(() => window.shownIndices.push(+area.dataset.index))
                    .observe(area, { attributes: true, attributeFilter: ['data-index'] });
            }"""
        )
        area = page.locator("section[data-session=demo] .spectrum-area")
        page.wait_for_function(
            "() => document.querySelector('section[data-session=demo] .spectrum-area')"
            ".dataset.index === '29'",
            timeout=60_000,
        )
        shown = page.evaluate("() => window.shownIndices")
        assert len(set(shown)) >= 2 and shown == sorted(shown), shown  # updated live
        assert area.locator("canvas").count() >= 1
        wait_plot(page, "d.state === 'success'")
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

    from blissng.shell import SimpleSession

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
    from blissng.shell import current_console

    console = current_console.get()
    assert console is not None
    return f"SIZE={console.size.rows}x{console.size.columns}"


@pytest.mark.timeout(120)
def test_the_console_follows_the_browser_window_size(browser: Any, tmp_path: Path) -> None:
    import re

    from blissng.shell import SimpleSession

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


@pytest.mark.timeout(120)
def test_plotselect_typed_in_the_browser_changes_the_plot(page: Any) -> None:
    wait_terminal(page, "demo [1]:")
    type_command(page, "ascan(m1, 0, 2, 10, 0.01, sim)")
    wait_plot(page, "d.state === 'success'")
    assert plot_data(page, "shown") == "sim:diode,sim:mon"  # no selection: every counter
    type_command(page, "plotselect(diode)")
    wait_plot(page, "d.shown === 'sim:diode'")  # the plot follows the prompt at once
    hidden = page.evaluate(
        """() => [...document.querySelectorAll('section[data-session=demo] .u-legend .u-series')]
            .map(e => e.classList.contains('u-off'))"""
    )
    assert hidden == [False, False, True]  # x, diode shown, mon hidden
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "webshell-plotselect.png"))
    # toggled by hand, and a log scale
    page.locator(f"{PLOT} input[data-channel='sim:mon']").check()
    wait_plot(page, "d.shown === 'sim:diode,sim:mon'")
    page.locator(f"{PLOT} .log-toggle input").check()
    wait_plot(page, "d.log === '1'")
    assert page.evaluate(
        "() => document.querySelector('section[data-session=demo] .plot .uplot') !== null"
    )
    # the next scan shows the selection too
    wait_terminal(page, "demo [3]:")
    type_command(page, "ascan(m1, 0, 2, 10, 0.01, sim)")
    wait_plot(page, "d.scan === '2' && d.state === 'success'")
    assert plot_data(page, "shown") == "sim:diode"


@pytest.mark.timeout(120)
def test_a_long_scan_is_drawn_decimated(page: Any) -> None:
    wait_terminal(page, "demo [1]:")
    type_command(page, "loopscan(5000, 0, sim)")
    wait_plot(page, "d.state === 'success' && d.points === '5000'", timeout=90_000)
    drawn = int(plot_data(page, "drawn"))
    assert 0 < drawn < 5000  # the min and max of each bucket, not every point
    width = page.evaluate(
        "() => document.querySelector('section[data-session=demo] .plot-area').clientWidth"
    )
    assert drawn <= 2 * max(200, width)
