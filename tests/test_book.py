"""The book as readers meet it: a clean build without warnings, and every page
checked in a real (headless) browser.

The build runs `jupyter-book build --all -W` into a temporary folder, so a
stale `_build` can never hide a warning. The browser checks need Debian's
`chromium` (tools/setup_env.sh installs it where it can) and the `playwright`
package; without them they are skipped with the reason. Screenshots of every
page go to `_build/screenshots/` (or `D2L_SCREENSHOTS`) for a person to look at.
"""

import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # builds the whole book

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOTS = Path(os.environ.get("D2L_SCREENSHOTS", ROOT / "_build" / "screenshots"))
#: The MathJax the book loads from a CDN, served from tools/setup_env.sh's copy.
MATHJAX_CDN = "https://cdn.jsdelivr.net/npm/mathjax@3/es5/"
MATHJAX = ROOT / ".venv" / "mathjax" / "es5"
#: The page without its code (which may hold backslashes) and typeset math.
PROSE_JS = """article => { const copy = article.cloneNode(true);
    copy.querySelectorAll('pre, code, mjx-container, script')
        .forEach(e => e.remove());
    return copy.innerText; }"""
RAW_TEX = re.compile(r"\\\(|\\\)|\\\[|\$\$|\\(frac|times|approx|ln|log|sum)\b")
#: What a reader can open, opened: every tab of a tab-set (only the selected
#: one is laid out otherwise), every <details> and every collapsed cell.
SHOW_EVERYTHING_JS = """() => {
    document.querySelectorAll('details').forEach(d => d.open = true);
    const style = document.createElement('style');
    style.textContent = '.sd-tab-content { display: block !important; } '
        + '.toggle-hidden { visibility: visible !important; height: auto !important; }';
    document.head.appendChild(style); }"""
#: Each code or output block that scrolls sideways (its lines are wider than the
#: column, so the reader sees them cut off): its widest line.
CUT_OFF_JS = """pres => pres.filter(p => p.scrollWidth > p.clientWidth)
    .map(p => p.textContent.split('\\n').reduce((a, b) => a.length >= b.length ? a : b))"""
#: Output lines of committed GPU runs wider than the column, by page: the lines
#: are shorter in the code now, and the outputs need the pages re-run on a GPU
#: (tools/gpu_run.sh). The test fails once one of these fits, so the list shrinks.
WIDE_UNTIL_GPU_RERUN = {
    "chapters/training/jax": ("FashionMNIST(train=(60000", "JAX, classic recipe, NVIDIA",
                              "JAX, fast recipe, NVIDIA", "classic: 10 epochs recorded"),
    "chapters/training/pytorch": ("classic: 10 epochs recorded",),
}


def toc_pages():
    """Every page the table of contents names, as paths without suffix."""
    return re.findall(r"(?:root|file):\s*(\S+)", (ROOT / "_toc.yml").read_text())


def repository():
    config = (ROOT / "_config.yml").read_text()
    url = re.search(r"^repository:\s*\n\s+url:\s*(\S+)", config, re.M).group(1)
    branch = re.search(r"^\s+branch:\s*(\S+)", config, re.M).group(1)
    return url.rstrip("/").removeprefix("https://github.com/"), branch


@pytest.fixture(scope="session")
def book(tmp_path_factory):
    """Build the whole book once, from scratch, with warnings as errors."""
    out = tmp_path_factory.mktemp("book")
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    result = subprocess.run([str(jupyter_book), "build", "--all", "-W", "--keep-going",
                             "--path-output", str(out), str(ROOT)],
                            capture_output=True, text=True, timeout=1200)
    log = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout + result.stderr)
    return out / "_build" / "html", result.returncode, log


def test_build_has_no_warnings(book):
    html, returncode, log = book
    warnings = [line for line in log.splitlines() if "WARNING" in line or "ERROR" in line]
    assert returncode == 0 and not warnings, "\n".join(warnings[:30]) or log[-3000:]
    assert (html / "index.html").exists()


def test_every_toc_page_is_rendered(book):
    html, _, _ = book
    missing = [p for p in toc_pages() if not (html / f"{p}.html").exists()]
    assert not missing, missing


@pytest.fixture(scope="session")
def server(book):
    html, returncode, _ = book
    if not (html / "index.html").exists():
        pytest.fail("the book did not build")
    handler = functools.partial(QuietHandler, directory=str(html))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def browser():
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (tools/setup_env.sh installs it "
                    "when run as root with apt-get)")
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright is not installed (requirements.txt)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"])
        yield browser
        browser.close()


@pytest.mark.parametrize("page", toc_pages())
def test_page_in_a_browser(page, server, browser):
    tab = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = []
    tab.on("pageerror", lambda exc: errors.append(f"JavaScript error: {exc}"))
    tab.on("console", lambda msg: errors.append(f"console: {msg.text}")
           if msg.type == "error" else None)
    # Only the book's own server is reachable; anything else (fonts, CDNs) is
    # blocked here and must not be needed for the page to work.
    tab.route(re.compile(r"^(?!http://127\.0\.0\.1)"), lambda route: route.abort())
    if MATHJAX.is_dir():  # routes registered later are tried first
        tab.route(f"{MATHJAX_CDN}**", lambda route: route.fulfill(
            path=str(MATHJAX / route.request.url[len(MATHJAX_CDN):].split("?")[0])))
    response = tab.goto(f"{server}/{page}.html", wait_until="load")
    assert response.status == 200
    tab.wait_for_timeout(300)
    uses_math = tab.query_selector(f"script[src^='{MATHJAX_CDN}']") is not None
    if uses_math and MATHJAX.is_dir():  # screenshots and checks after typesetting
        tab.wait_for_function("() => window.MathJax && MathJax.startup "
                              "&& MathJax.startup.promise", timeout=30_000)
        tab.evaluate("() => MathJax.startup.promise")
        raw = [m.group(0) for m in RAW_TEX.finditer(tab.eval_on_selector("article", PROSE_JS))]
        assert not raw, f"TeX that MathJax did not typeset: {raw[:5]}"

    broken = tab.eval_on_selector_all(
        "article img", "imgs => imgs.filter(i => !(i.complete && i.naturalWidth > 0))"
                       ".map(i => i.src)")
    assert not broken, f"images that did not load: {broken}"
    text = tab.inner_text("article")
    assert "Traceback (most recent call last)" not in text
    assert not tab.query_selector_all(".output.traceback, .output.error, .cell_output .traceback")
    # Requests we blocked on purpose show up as console errors; keep the rest.
    errors = [e for e in errors if "net::ERR_FAILED" not in e]
    assert not errors, errors

    if page.startswith("chapters/"):  # notebook pages have launch buttons
        repo, branch = repository()
        colab = tab.eval_on_selector_all(
            "a[href*='colab.research.google.com']", "links => links.map(a => a.href)")
        expected = f"https://colab.research.google.com/github/{repo}/blob/{branch}/{page}.ipynb"
        assert expected in colab, f"Colab link {colab} should be {expected}"
        # but not shown where the page cannot run there (_static/book.css)
        assert tab.is_visible(".dropdown-launch-buttons") != page.endswith("mxnet")
    if page.endswith("mxnet"):
        assert "cannot run on" in text and "Colab" in text, "MXNet pages must carry the Colab note"

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(SCREENSHOTS / f"{page.replace('/', '_')}.png"), full_page=True)

    tab.evaluate(SHOW_EVERYTHING_JS)  # after the screenshot: it changes the layout
    cut_off = [line.strip() for line in tab.eval_on_selector_all("article pre", CUT_OFF_JS)]
    known = WIDE_UNTIL_GPU_RERUN.get(page, ())
    assert [line for line in cut_off if not line.startswith(known)] == [], \
        "lines wider than the page's column (shown cut off, behind a scroll bar)"
    assert [k for k in known if not any(line.startswith(k) for line in cut_off)] == [], \
        "these fit the column now: take them out of WIDE_UNTIL_GPU_RERUN"
    wide_tables = tab.eval_on_selector_all(  # a cut-off column (_static/book.css)
        "article table", "ts => ts.filter(t => t.scrollWidth > t.parentElement.clientWidth)"
                         ".map(t => t.innerText.slice(0, 60))")
    assert not wide_tables, f"tables wider than the page's column: {wide_tables}"
    tab.close()


@pytest.mark.parametrize("page", [p for p in toc_pages() if p.startswith("chapters/")])
def test_every_chapter_page_offers_its_notebook_for_download(page, book):
    """The page's download button links the .ipynb source (Colab's button is
    checked in the browser test above)."""
    html, _, _ = book
    text = (html / f"{page}.html").read_text()
    link = re.search(rf'href="([^"]*_sources/{re.escape(page)}\.ipynb)"', text)
    assert link, f"{page}.html links no .ipynb download"
    assert (html / f"{page}.html").parent.joinpath(link.group(1)).resolve().exists()
