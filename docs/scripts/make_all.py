"""Rerun every docs script: regenerates all figures and tables in ``docs/_generated/``.

Runs each ``docs/scripts/*.py`` in its own process, in name order, skipping this
file, ``screenshot.py`` (it needs a built site and a browser) and files whose
name starts with ``_``. Run from anywhere::

    python docs/scripts/make_all.py             # everything
    python docs/scripts/make_all.py accuracy    # only scripts whose name contains "accuracy"

Then rebuild the site: ``python -m sphinx -W --keep-going -b html docs docs/_build/html``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
ROOT = SCRIPTS.parents[1]
SKIP = {"make_all.py", "screenshot.py"}


def scripts(selected: list[str] | None = None) -> list[Path]:
    found = [p for p in sorted(SCRIPTS.glob("*.py")) if p.name not in SKIP and p.name[0] != "_"]
    if selected:
        found = [p for p in found if any(s in p.stem for s in selected)]
    return found


def main(selected: list[str] | None = None) -> int:
    failed = []
    for path in scripts(selected):
        start = time.perf_counter()
        print(f"== {path.relative_to(ROOT)}", flush=True)
        proc = subprocess.run([sys.executable, str(path)], cwd=ROOT, check=False)
        print(f"   exit {proc.returncode} in {time.perf_counter() - start:.1f} s", flush=True)
        if proc.returncode != 0:
            failed.append(path.name)
    if failed:
        print("FAILED: " + ", ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
