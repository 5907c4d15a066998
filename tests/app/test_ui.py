"""The reviewer page at /ui: its files over plain HTTP, and the whole review flow in headless Chromium.

The browser test starts a real `attrib serve` (a subprocess on a free port, SQLite, a temporary
ATTRIB_HOME) with a small catalog of real photos and a reviewer key, then drives Debian's Chromium
through chromedriver. Screenshots of each view go to a temporary folder; with
ATTRIB_UI_SCREENSHOTS=docs/screenshots they also refresh the committed ones.
"""

from __future__ import annotations

import importlib.util
import io
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.main import create_app
from app.routes.ui import STATIC
from app.settings import Settings

REPO = Path(__file__).resolve().parents[2]
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
ASSETS = sorted(p.name for p in STATIC.iterdir() if p.is_file())
TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}


@pytest.fixture
def client(tmp_path):
    """The app without its lifespan: the page's files need no catalog."""
    return TestClient(create_app(Settings(home=tmp_path / "home", database_url=f"sqlite:///{tmp_path}/a.db")))


def test_ui_page_is_self_contained_html(client):
    response = client.get("/ui")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'none'" in response.headers["content-security-policy"]
    html = response.text
    assert '<script type="module" src="/ui/app.js">' in html and 'href="/ui/ui.css"' in html
    # Nothing is loaded from another host: every src/href is a local path or a fragment.
    links = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)["']""", html)
    assert links and all(link.startswith(("/", "#")) and not link.startswith("//") for link in links), links
    assert client.get("/ui/").text == html


@pytest.mark.parametrize("name", ASSETS)
def test_ui_files_have_their_types_and_no_external_urls(client, name):
    response = client.get(f"/ui/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(TYPES[Path(name).suffix])
    assert response.headers["x-content-type-options"] == "nosniff"
    text = response.text
    assert not re.search(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I), "a URL to another host"
    assert not re.search(r"@import|url\(\s*['\"]?(?:https?:|//)", text), "CSS that loads from elsewhere"
    for module in re.findall(r"""from\s+["']([^"']+)["']""", text):  # every module import is one of ours
        assert module.startswith("/ui/") and module[4:] in ASSETS, module
    assert len(text.splitlines()) <= 320, "keep each file small"


@pytest.mark.parametrize("path", ["/ui/nope.js", "/ui/..%2Fmain.py", "/ui/ui.py", "/ui/.hidden.js"])
def test_ui_serves_only_its_own_files(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_committed_screenshots_are_small():
    shots = sorted((REPO / "docs" / "screenshots").glob("ui-*.png"))
    assert {p.name for p in shots} >= {"ui-upload.png", "ui-case.png", "ui-queue.png", "ui-report.png"}
    assert all(p.stat().st_size < 300_000 for p in shots)


# -- the browser test ------------------------------------------------------------------------

needs_desk = pytest.mark.skipif(importlib.util.find_spec("app.routes.cases") is None,
                                reason="the review desk API (cases, decisions, reports) is not in this tree")
needs_browser = pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()) and not os.environ.get("CI"),
                                   reason="Debian's chromium and chromium-driver are missing (.ci/run installs them)")
CONCEPTS = {"fish": ["n01440764_tench", "n01443537_goldfish"],
            "shark": ["n01484850_great_white_shark", "n01491361_tiger_shark"],
            "bird": ["n01514668_cock", "n01514859_hen"]}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def served(tmp_path, shared_data):
    """`attrib serve` on a free port with a catalog of six photos under three concepts; yields
    (base URL, reviewer key)."""
    from app.services import open_database
    from index.auth import create_key

    env = {**os.environ, "ATTRIB_HOME": str(tmp_path / "home"), "ATTRIB_DATABASE_URL": f"sqlite:///{tmp_path}/a.db",
           "ATTRIB_DEVICE": "cpu", "PYTHONPATH": str(REPO)}
    engine, sessions = open_database(Settings(home=tmp_path / "home", database_url=env["ATTRIB_DATABASE_URL"]))
    reviewer = create_key(sessions, "alice", role="reviewer")[1]
    admin = create_key(sessions, "loader", role="admin")[1]
    ingest = create_key(sessions, "bot", role="ingest")[1]
    engine.dispose()
    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(port)], cwd=REPO, env=env,
                              stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=60) as http:
            for _ in range(240):
                assert server.poll() is None, (tmp_path / "serve.log").read_text()
                try:
                    if http.get("/readyz").status_code in (200, 503):
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.5)
            photos = [(concept, shared_data / "imagenet-sample" / f"{stem}.jpg")
                      for concept, stems in CONCEPTS.items() for stem in stems]
            indexed = http.post("/index", headers={"X-API-Key": admin},
                                files=[("files", (p.name, p.read_bytes(), "image/jpeg")) for _, p in photos],
                                data={"concept": [c for c, _ in photos]})
            assert indexed.status_code == 200, indexed.text
            assert indexed.json()["indexed"] == 6
            # The identity head in the content space too, so both columns rank (no training here).
            job = http.put("/spaces/content", headers={"X-API-Key": admin})
            assert job.status_code == 202, job.text
            for _ in range(240):
                state = http.get(job.json()["status_url"], headers={"X-API-Key": admin}).json()["state"]
                if state not in ("queued", "running"):
                    break
                time.sleep(0.25)
            assert state == "succeeded", state
        yield base, reviewer, ingest
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


@pytest.fixture
def browser(tmp_path, monkeypatch):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    # The driver's path is given, so Selenium Manager (which could download one) is skipped; were it
    # ever run, it would fail here rather than reach the network.
    monkeypatch.setenv("SE_OFFLINE", "true")
    monkeypatch.setenv("SE_MANAGER_PATH", str(tmp_path / "no-selenium-manager"))
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,900", f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


class Page:
    """Waits on visible text, and screenshots each view."""

    def __init__(self, driver, shots: Path):
        from selenium.common.exceptions import StaleElementReferenceException
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys
        from selenium.webdriver.support.ui import WebDriverWait

        self.driver, self.By, self.Keys, self.shots = driver, By, Keys, shots
        # Views re-render by replacing their elements, so an element found a moment ago may be gone.
        self.wait = WebDriverWait(driver, 60, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,))
        self.keep = os.environ.get("ATTRIB_UI_SCREENSHOTS")

    def find(self, css):
        return self.driver.find_element(self.By.CSS_SELECTOR, css)

    def text_in(self, css: str, *texts: str) -> str:
        """Waits until the element shows every one of `texts`; returns its visible text."""
        def seen(driver):
            for el in driver.find_elements(self.By.CSS_SELECTOR, css):
                if el.is_displayed() and all(t in el.text for t in texts):
                    return el.text
            return False
        try:
            return self.wait.until(seen)
        except Exception as exc:
            body = self.driver.find_element(self.By.TAG_NAME, "body").text
            raise AssertionError(f"{texts} not seen in {css} ({type(exc).__name__}); the page says:\n{body}") from None

    def images_loaded(self, css: str) -> None:
        self.wait.until(lambda d: d.execute_script(
            "const imgs = [...document.querySelectorAll(arguments[0])];"
            "return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0 && i.src.startsWith('blob:'));",
            css))

    def screenshot(self, name: str) -> None:
        height = self.driver.execute_script(
            "return document.documentElement.scrollHeight + window.outerHeight - window.innerHeight")
        self.driver.set_window_size(1280, min(max(height, 600), 1600))
        self.driver.execute_script("document.activeElement && document.activeElement.blur()")
        png = self.driver.get_screenshot_as_png()
        (self.shots / f"ui-{name}.png").write_bytes(png)
        if self.keep:  # small enough to commit: 256 colours, optimised
            target = REPO / self.keep
            target.mkdir(parents=True, exist_ok=True)
            small = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=256)
            small.save(target / f"ui-{name}.png", optimize=True)
        self.driver.set_window_size(1280, 900)


@needs_desk
@needs_browser
def test_review_flow_in_a_real_browser(served, browser, tmp_path, shared_data):
    base, reviewer, ingest = served
    page = Page(browser, tmp_path)
    query = tmp_path / "tench-edit.jpg"
    image = Image.open(shared_data / "imagenet-sample" / "n01440764_tench.jpg").convert("RGB")
    w, h = image.size
    image.crop((w // 10, h // 10, w * 9 // 10, h * 9 // 10)).resize((w * 3 // 5, h * 3 // 5)).save(query, quality=80)

    browser.get(f"{base}/ui")
    page.text_in("main", "Enter your key")

    # A bad key: a clear 401 message with the API's code, and the key is not kept.
    page.find("#key-input").send_keys("attrib_not-a-key")
    page.find("#key-form button").click()
    page.text_in("#messages", "missing or not valid", "unauthorized")
    assert browser.execute_script("return sessionStorage.getItem('attrib.key')") is None

    # A key whose role cannot open cases: a clear 403 message.
    page.find("#key-input").send_keys(ingest)
    page.find("#key-form button").click()
    page.text_in("#who", "Signed in as bot (ingest)")
    page.find("#file").send_keys(str(query))
    page.text_in("#messages", "role is not allowed", "forbidden_role")
    page.find("#key-forget").click()

    page.find("#key-input").send_keys(reviewer)
    page.find("#key-form button").click()
    page.text_in("#who", "Signed in as alice (reviewer)")

    # A file that is not an image: the 415 in words, with its code.
    not_image = tmp_path / "notes.jpg"
    not_image.write_text("these are notes, not pixels")
    page.find("#file").send_keys(str(not_image))
    page.text_in("#messages", "not an image the server accepts", "not_an_image")

    # Upload: the query beside content and style candidates, with bars and source thumbnails.
    page.find("#file").send_keys(str(query))
    text = page.text_in(".case", "Case #1", "Open", "tench-edit.jpg", "Content", "Style", "fish", "shark", "bird")
    assert "Match" in text and "No match" in text and "Escalate" in text
    page.images_loaded(".query img")
    page.images_loaded(".thumb img")
    assert browser.find_elements(page.By.CSS_SELECTOR, ".space .bar .fill")
    answer = browser.execute_script("""
        const r = await fetch('/cases/1', {headers: {'X-API-Key': sessionStorage.getItem('attrib.key')}});
        return (await r.json()).answer;""")
    for name, space in answer["spaces"].items():  # calibrated answers: none of these, prominently
        if space.get("none_probability") is not None:
            page.text_in(f"section[aria-label='{name} candidates'] .nonebox", "None of these")
            page.text_in(f"section[aria-label='{name} candidates']", "bars: calibrated probability")
    verdict = answer["verdict"]  # the summary is the one verdict across the spaces
    said = f"Match: {verdict['concept']}" if verdict["kind"] == "match" else "No source in the catalog"
    page.text_in(".summary .stat.verdict", said)  # its label is styled in capitals
    page.screenshot("upload")
    compare_view(page, browser)

    # Decide: the verdict's concept is ticked; a note, then one click.
    ticked = [el.get_attribute("value")
              for el in browser.find_elements(page.By.CSS_SELECTOR, "input[name=concept]:checked")]
    assert len(ticked) == 1 and (verdict["kind"] != "match" or ticked == [verdict["concept"]])
    page.find("#note").send_keys("Same tench, cropped and shrunk.")
    page.find("button.d-match").click()
    page.text_in(".history", "Match", "by alice", "Same tench, cropped and shrunk.", f"concepts: {ticked[0]}")
    assert browser.current_url.endswith("#/cases/1")

    # Re-score: the history shows it too.
    next(b for b in browser.find_elements(page.By.CSS_SELECTOR, ".actions button") if b.text == "Re-score").click()
    page.text_in(".history", "Re-score", "no top concept changed")
    page.images_loaded(".query img")
    page.screenshot("case")

    # The queue: filter by status, find the case, open it.
    page.find("a[data-nav=cases]").click()
    page.text_in("table.cases", "tench-edit.jpg")
    page.find("#f-status option[value=no_match]").click()
    page.find(".filters button[type=submit]").click()
    page.text_in(".queue", "No cases match these filters.")
    page.find("#f-status option[value=match]").click()
    page.find("#f-min").send_keys("0")
    page.find("#f-sort option[value=verdict]").click()
    page.find(".filters button[type=submit]").click()
    row = page.text_in("table.cases tbody", "#1", "Match", "tench-edit.jpg", ticked[0])
    assert "1–1 of 1" in page.text_in(".pager", "of 1"), row
    page.screenshot("queue")
    page.find("table.cases tbody a").click()
    page.text_in(".case", "Case #1", "Match")

    # The report: in a sandboxed frame, and in a tab of its own.
    next(a for a in browser.find_elements(page.By.CSS_SELECTOR, ".actions a") if a.text == "Report").click()
    page.text_in(".report", "Report for case #1")
    frame = page.wait.until(lambda d: d.find_elements(page.By.CSS_SELECTOR, "iframe.report-frame"))[0]
    browser.switch_to.frame(frame)
    report = page.text_in("body", "tench-edit.jpg", "Verdict")
    browser.switch_to.default_content()
    assert "match" in report.lower()
    page.screenshot("report")
    main_window = browser.current_window_handle
    next(b for b in browser.find_elements(page.By.CSS_SELECTOR, ".actions button") if "new tab" in b.text).click()
    page.wait.until(lambda d: len(d.window_handles) == 2)
    browser.switch_to.window(next(h for h in browser.window_handles if h != main_window))
    page.text_in("body", "tench-edit.jpg")
    browser.close()
    browser.switch_to.window(main_window)

    # Drag and drop opens a case too (a drop event carrying a file, as a desktop drag makes).
    page.find("a[data-nav=upload]").click()
    page.text_in(".upload", "Drop an image here")
    browser.execute_script("""
        const bytes = await (await fetch('/sources/5/thumbnail')).blob();
        const files = new DataTransfer();
        files.items.add(new File([bytes], 'dropped-bird.jpg', {type: 'image/jpeg'}));
        document.querySelector('.drop').dispatchEvent(new DragEvent('drop', {dataTransfer: files, bubbles: true}));""")
    page.text_in(".case", "Case #2", "dropped-bird.jpg", "bird")


COUNT_COLOUR = """
const canvas = document.querySelector(arguments[0]);
const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
const [r, g, b] = arguments[1];
let n = 0;
for (let i = 0; i < data.length; i += 4) {
  if (Math.abs(data[i] - r) + Math.abs(data[i + 1] - g) + Math.abs(data[i + 2] - b) < 60) n++;
}
return n;"""


def compare_view(page, browser):
    """The compare view: the query and a source side by side, the regions drawn on the canvases
    (counted in pixels), the heat map and the overlay slider, keys to step and to close."""
    drawn = lambda: page.find("section.compare").get_attribute("data-drawn")  # noqa: E731
    page.find("button.compare").click()  # the first source of the first space: the tench itself
    page.wait.until(lambda d: drawn())
    first = drawn()
    page.text_in("section.compare", f"Source #{first}", "matched points", "1 of")
    magenta, cyan = [255, 0, 255], [0, 200, 255]
    assert browser.execute_script(COUNT_COLOUR, "canvas.cmp-source", magenta) > 300  # the query's frame, in the source
    assert browser.execute_script(COUNT_COLOUR, "canvas.cmp-query", magenta) < 20  # drawn only there
    assert browser.execute_script(COUNT_COLOUR, "canvas.cmp-query", cyan) > 300  # the matched region in the query
    plain = browser.execute_script("return document.querySelector('canvas.cmp-query').toDataURL()")
    browser.execute_script("const s = document.getElementById('cmp-mix'); s.value = 60;"
                           "s.dispatchEvent(new Event('input'));")
    laid = browser.execute_script("return document.querySelector('canvas.cmp-query').toDataURL()")
    page.find("#cmp-heat").click()
    heated = browser.execute_script("return document.querySelector('canvas.cmp-query').toDataURL()")
    assert len({plain, laid, heated}) == 3
    page.screenshot("compare")
    page.find("body").send_keys(page.Keys.ARROW_RIGHT)
    page.wait.until(lambda d: drawn() not in (None, first))
    page.text_in("section.compare", "2 of")
    page.find("body").send_keys(page.Keys.ESCAPE)
    page.wait.until(lambda d: not d.find_elements(page.By.CSS_SELECTOR, "section.compare"))
