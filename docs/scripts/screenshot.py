"""Open the built site in headless Chromium, with no network, and screenshot its pages.

Needs a built site (``python -m sphinx -W --keep-going -b html docs docs/_build/html``)
and Debian's ``chromium`` (``apt-get install -y chromium``). Each page is loaded from
``file://`` with networking switched off (background networking, component updates and
sync disabled, every host name resolving to nothing, a dead proxy), JavaScript given
up to ``--virtual-time-budget`` ms to typeset the math, then

* saved as a PNG in ``docs/_generated/screenshots/<page>.png`` (look at them), and
* dumped as a DOM to count the MathJax output elements (``mjx-container``), so a page
  whose formulas stayed raw TeX is detected without looking.

Run from the repository root::

    python docs/scripts/screenshot.py                 # the default pages
    python docs/scripts/screenshot.py math accuracy   # some pages
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HTML = ROOT / "docs" / "_build" / "html"
OUT = ROOT / "docs" / "_generated" / "screenshots"
# "page" (a 1280x2000 window) or "page@H" (a 1280xH window: the whole of a long page,
# saved as page-full.png, to see its figures and tables).
PAGES = [
    "index",
    "getting_started",
    "math",
    "math@7500",
    "estimators",
    "mmd",
    "accuracy",
    "accuracy@9000",
    "performance",
    "reference_vae",
    "generated/vaemath.gaussian_kl",
]
WIDTH, HEIGHT = 1280, 2000
BUDGET_MS = 15000


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _flags(user_data_dir: str, height: int = HEIGHT) -> list[str]:
    return [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-default-apps",
        "--disable-extensions",
        # Belt and braces: nothing can be resolved or proxied, so any attempt to
        # fetch from a CDN fails instead of silently succeeding.
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--proxy-server=http://127.0.0.1:9",
        f"--user-data-dir={user_data_dir}",
        f"--virtual-time-budget={BUDGET_MS}",
        "--hide-scrollbars",
        f"--window-size={WIDTH},{height}",
    ]


def _shrink(png: Path) -> None:
    """Re-save the screenshot with a 256-colour palette (a third of the size), if Pillow is here."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow comes with matplotlib
        return
    with Image.open(png) as image:
        small = image.convert("RGB").quantize(colors=256)
    small.save(png, optimize=True)


def shoot(page: Path, png: Path, browser: str, height: int = HEIGHT) -> dict[str, int]:
    """Screenshot one page; return counts read from its rendered DOM."""
    url = page.resolve().as_uri()
    with tempfile.TemporaryDirectory(prefix="vaemath-chromium-") as profile:
        subprocess.run(
            [browser, *_flags(profile, height), f"--screenshot={png}", url],
            check=True,
            capture_output=True,
            timeout=120,
        )
    with tempfile.TemporaryDirectory(prefix="vaemath-chromium-") as profile:
        dom = subprocess.run(
            [browser, *_flags(profile), "--dump-dom", url],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
    _shrink(png)
    source = page.read_text(encoding="utf-8")
    return {
        # math nodes Sphinx wrote (inline \( \) and display \[ \]) vs MathJax output
        "math_in_source": len(re.findall(r'class="math', source)),
        "mathjax_rendered": dom.count("<mjx-container"),
        "images": len(re.findall(r"<img ", source)),
    }


def main(pages: list[str] | None = None, html: Path = HTML, out: Path = OUT) -> dict:
    browser = chromium()
    if browser is None:
        msg = "chromium not found: apt-get install -y chromium"
        raise SystemExit(msg)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for target in pages or PAGES:
        name, _, tall = target.partition("@")
        page = html / f"{name}.html"
        if not page.exists():
            if not pages and (html / "index.html").exists():
                print(f"{name}: not in this build, skipped")
                continue
            msg = f"{page} does not exist: build the docs first"
            raise SystemExit(msg)
        stem = name.replace("/", "_") + ("-full" if tall else "")
        results[target] = shoot(page, out / f"{stem}.png", browser, int(tall or HEIGHT))
        print(target, results[target])
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pages", nargs="*", help=f"page names (default: {' '.join(PAGES)})")
    args = parser.parse_args()
    main(args.pages)
    sys.exit(0)
