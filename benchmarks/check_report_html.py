"""Open ``report.html`` pages in a real headless browser and check what a reader would see:
every image decoded and shown, no script or resource error, nothing fetched from outside.

Debian's ``chromium`` is installed with apt when missing. Each page is loaded from a copy with a
probe script inserted first in its ``<head>`` (an error listener, then on ``load`` the count of
images that did not decode), the DOM is dumped after the page settled, and the browser's own
console log is read for errors; a screenshot of each page goes beside the JSON. The suite only
parses the pages (``tests/test_pipeline.py``): this needs the browser.

    python benchmarks/check_report_html.py runs/demo/summary.html runs/demo/mma/report.html \
        --out benchmarks/results/report_html
"""

from __future__ import annotations

import argparse
import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PROBE = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || (e.target && e.target.src) || e)), true);
window.addEventListener('load', () => {
  const imgs = [...document.images];
  const broken = imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt);
  document.body.setAttribute('data-probe', JSON.stringify({images: imgs.length, broken, errors: window.__errors}));
});
</script>"""


def browser() -> str:
    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return shutil.which(name)
    print("chromium is missing: installing Debian's package (apt-get)", flush=True)
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True)
    return shutil.which("chromium")


def run_browser(exe: str, url: str, *extra: str) -> subprocess.CompletedProcess:
    flags = ["--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--enable-logging=stderr",
             "--v=0", "--virtual-time-budget=5000"]  # fmt: skip
    return subprocess.run([exe, *flags, *extra, url], capture_output=True, text=True, timeout=120)


def check_page(exe: str, page: Path, shots: Path) -> dict:
    text = page.read_text()
    with tempfile.TemporaryDirectory() as tmp:
        probed = Path(tmp) / page.name
        probed.write_text(text.replace("<head>", "<head>" + PROBE, 1))
        dom = run_browser(exe, probed.as_uri(), "--dump-dom")
    m = re.search(r'data-probe="([^"]*)"', dom.stdout)
    probe = json.loads(html.unescape(m.group(1))) if m else {"images": None, "broken": None, "errors": ["no probe result"]}
    console = [ln for ln in dom.stderr.splitlines()
               if "CONSOLE" in ln and re.search(r"error|Uncaught|Failed to load", ln, re.I)]  # fmt: skip
    shot = shots / f"{page.parent.name}_{page.stem}.png"
    run_browser(exe, page.resolve().as_uri(), f"--screenshot={shot}", "--window-size=1280,2400")
    external = re.findall(r'(?:src|href)="(https?:[^"]+)"', text)
    ok = probe["images"] is not None and not probe["broken"] and not probe["errors"] and not console and not external
    return {"page": str(page), "images": probe["images"], "broken_images": probe["broken"],
            "script_errors": probe["errors"], "console_errors": console, "external_references": external,
            "screenshot": str(shot) if shot.is_file() else None, "ok": bool(ok)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pages", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/report_html"))
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    exe = browser()
    version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.strip()
    results = [check_page(exe, p, a.out) for p in a.pages]
    for r in results:
        print(f"{'ok  ' if r['ok'] else 'FAIL'} {r['page']}: {r['images']} image(s), broken {r['broken_images']}, "
              f"script errors {r['script_errors']}, console errors {len(r['console_errors'])}, "
              f"external {len(r['external_references'])}; screenshot {r['screenshot']}")  # fmt: skip
    (a.out / "check.json").write_text(json.dumps({"browser": version, "pages": results}, indent=2))
    sys.exit(0 if all(r["ok"] for r in results) else 1)


if __name__ == "__main__":
    main()
