"""How long the reviewer page takes to show a case with many sources, in a real headless Chromium.

    .venv/bin/python benchmarks/ui_load.py [--sources 21] [--runs 5]

Starts `attrib serve` (SQLite, a fresh ATTRIB_HOME), indexes 40 photos, opens one case with
--sources concepts per space (each photo is its own concept, so each space shows --sources
sources, many of them the same in every space), then loads
`/ui#/cases/1` --runs times in a new tab with the key in sessionStorage and reports the time from
navigation start until the case is drawn and every image on it has loaded (median and max).
Target (issue 26): under a second with 20 sources on screen.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from soak import SHARED, index_photos, start_server  # noqa: E402

READY = """
const imgs = [...document.querySelectorAll('article.case img')].filter(i => i.getBoundingClientRect().top < innerHeight);
const ready = document.querySelector('article.case') && imgs.length > 0 &&
  imgs.every(i => i.complete && i.naturalWidth > 0 && i.src.startsWith('blob:'));
return ready ? [performance.now(), imgs.length] : null;"""  # images below the fold load lazily, when scrolled to


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-dev-shm-usage", "--window-size=1280,3200"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(executable_path="/usr/bin/chromedriver"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sources", type=int, default=21)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    photos = sorted((SHARED / "imagenet-sample").glob("*.jpg"))[:40]
    with tempfile.TemporaryDirectory() as home:
        process, url, key = start_server(Path(home))
        try:
            index_photos(url, key, photos)
            k = args.sources  # each photo is its own concept: one source per concept, k per space
            case = httpx.post(f"{url}/cases", params={"k": k, "sources": 3}, headers={"X-API-Key": key}, timeout=60,
                              files={"file": ("q.jpg", photos[7].read_bytes())}).json()
            shown = {s["id"] for space in case["answer"]["spaces"].values() for c in space["concepts"]
                     for s in c["sources"]}
            driver, times = browser(), []
            try:
                driver.get(f"{url}/ui")
                driver.execute_script("sessionStorage.setItem('attrib.key', arguments[0])", key)
                for _ in range(args.runs + 1):  # the first load warms the server's thumbnail cache
                    driver.get("about:blank")
                    driver.get(f"{url}/ui#/cases/{case['id']}")
                    deadline = time.monotonic() + 30
                    while (found := driver.execute_script(READY)) is None and time.monotonic() < deadline:
                        time.sleep(0.01)
                    times.append(found)
            finally:
                driver.quit()
        finally:
            process.terminate()
            process.wait(timeout=60)
    loads = [t[0] for t in times[1:] if t]
    report = {"distinct_sources": len(shown), "images_on_screen": times[-1][1] if times[-1] else None, "runs": len(loads),
              "median_ms": round(statistics.median(loads)), "max_ms": round(max(loads))}
    print(json.dumps(report))
    return 0 if report["median_ms"] < 1000 else 1


if __name__ == "__main__":
    sys.exit(main())
