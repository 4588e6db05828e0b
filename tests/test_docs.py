"""Tests of the documentation: its executable examples, its scripts and its build.

* The examples of ``docs/getting_started.rst`` run as doctests.
* The scripts in ``docs/scripts/`` run on small inputs (the committed outputs in
  ``docs/_generated/`` come from full runs: ``python docs/scripts/make_all.py``).
* The site builds offline and warning-free (skipped when Sphinx or the theme is
  missing), and in headless Chromium with no network its formulas are typeset by
  the bundled MathJax and its figures load (skipped when Chromium is missing).
"""

from __future__ import annotations

import doctest
import importlib.util
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

import vaemath

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SCRIPTS = DOCS / "scripts"


def _load_script(name: str) -> ModuleType:
    path = SCRIPTS / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_vaemath_docs_{name}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sphinx_missing() -> str | None:
    for module in ("sphinx", "pydata_sphinx_theme", "numpydoc", "matplotlib"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install -e '.[docs]')"
    if importlib.util.find_spec("sphinx-mathjax-offline") is None:
        return "sphinx-mathjax-offline is not installed"
    return None


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return name
    return None


class TestGettingStarted:
    def test_examples_run(self) -> None:
        torch = pytest.importorskip("torch")
        previous = torch.get_default_dtype()
        torch.set_default_dtype(torch.float32)
        try:
            result = doctest.testfile(
                str(DOCS / "getting_started.rst"),
                module_relative=False,
                optionflags=doctest.NORMALIZE_WHITESPACE,
                verbose=False,
                report=True,
            )
        finally:
            torch.set_default_dtype(previous)
        assert result.attempted >= 10
        assert result.failed == 0


@pytest.fixture(scope="module")
def accuracy() -> ModuleType:
    pytest.importorskip("torch")
    pytest.importorskip("mpmath")
    pytest.importorskip("matplotlib")
    return _load_script("accuracy")


class TestAccuracyScript:
    @pytest.mark.parametrize(
        ("computed", "exact", "dtype", "expected"),
        [
            pytest.param(1.0 + 2 * 2.0**-52, 1.0, np.float64, 2.0, id="2 ulps of 1, float64"),
            pytest.param(1.0 - 2.0**-53, 1.0, np.float64, 0.5, id="half an ulp below 1"),
            pytest.param(1.0 + 2.0**-23, 1.0, np.float32, 1.0, id="1 ulp of 1, float32"),
            pytest.param(3.0 * 2.0**-30, 2.0**-30, np.float32, 2.0 * 2.0**23, id="float32 tiny"),
            pytest.param(0.0, 0.0, np.float64, 0.0, id="exact zero"),
            pytest.param(np.inf, 1.0, np.float64, np.inf, id="overflow"),
            pytest.param(np.nan, 1.0, np.float32, np.inf, id="nan"),
        ],
    )
    def test_ulp_error(
        self, accuracy: ModuleType, computed: float, exact: float, dtype: type, expected: float
    ) -> None:
        err = accuracy.ulp_error(np.array([computed]), np.array([exact]), dtype)
        assert err[0] == expected

    def test_exact_references(self, accuracy: ModuleType) -> None:
        # Closed forms evaluated independently with the math module.
        kl = accuracy.exact_kl(
            {
                "mu": np.array([1.0, 0.0, 0.7]),
                "logvar": np.array([0.0, 1.0, math.log(0.02)]),
                "prior_mu": np.array([0.0, 0.0, 0.5]),
                "prior_logvar": np.array([0.0, 0.0, math.log(0.01)]),
            }
        )
        assert kl[0] == 0.5
        assert kl[1] == pytest.approx((math.e - 2) / 2, rel=1e-15)
        expected = math.log(0.1 / math.sqrt(0.02)) + (0.02 + 0.2**2) / (2 * 0.01) - 0.5
        assert kl[2] == pytest.approx(expected, rel=1e-13)
        logp = accuracy.exact_log_density(
            {"z": np.array([1.0]), "mu": np.array([0.0]), "logvar": np.array([0.0])}
        )
        assert logp[0] == pytest.approx(-0.5 * math.log(2 * math.pi) - 0.5, rel=1e-15)
        lower = np.array([[[2.0, 0.0], [0.5, 1.0]]])
        mvn = accuracy.exact_mvn_kl(
            {
                "mu": np.array([[1.0, -1.0]]),
                "scale_tril": lower,
                "prior_mu": np.zeros((1, 2)),
                "prior_scale_tril": np.eye(2)[None],
            }
        )
        cov = lower[0] @ lower[0].T
        expected = 0.5 * (np.trace(cov) + 2.0 - 2 - np.log(np.linalg.det(cov)))
        assert mvn[0] == pytest.approx(expected, rel=1e-13)

    def test_quick_run(self, accuracy: ModuleType, tmp_path: Path) -> None:
        record = accuracy.main(n=40, out_dir=tmp_path, figure=False)
        tables = record["tables"]
        assert set(tables) == {
            "accuracy_kl_standard",
            "accuracy_kl_prior",
            "accuracy_log_density",
            "accuracy_mvn_kl",
        }
        for stem in tables:
            text = (tmp_path / f"{stem}.rst").read_text(encoding="utf-8")
            assert text.startswith(".. list-table::")
        standard = tables["accuracy_kl_standard"]
        regions = standard["vaemath.gaussian_kl (NumPy)"]
        region = next(r for r in regions if r.startswith("KL near 0"))
        # The naive formula has no correct digit near KL = 0 (float64: 2**52 ulps
        # is none left); vaemath keeps the last few.
        naive = next(name for name in standard if name.startswith("naive"))
        assert standard[naive][region]["float64"]["max"] > 1e12
        assert standard["vaemath.gaussian_kl (NumPy)"][region]["float64"]["max"] < 16
        json.loads((tmp_path / "accuracy.json").read_text(encoding="utf-8"))


class TestBenchTable:
    @staticmethod
    def _data() -> dict:
        def bench(group: str, name: str, median: float) -> dict:
            return {"group": group, "name": name, "stats": {"median": median}}

        return {
            "machine_info": {
                "cpu": {"brand_raw": "Test CPU", "count": 2},
                "system": "Linux",
                "python_version": "3.11.7",
            },
            "commit_info": {"id": "0123456789abcdef", "dirty": False},
            "datetime": "2026-01-01T00:00:00",
            "benchmarks": [
                bench("kl (64, 32)", "naive", 2e-6),
                bench("kl (64, 32)", "vaemath", 4e-6),
                bench("kl (64, 32)", "torch.distributions", 12e-6),
                bench("floor", "test_floor[a]", 3e-3),
                bench("floor", "test_floor[b]", 1e-3),
            ],
        }

    def test_ratios(self) -> None:
        bench_table = _load_script("bench_table")
        tables = {t["group"]: t for t in bench_table.ratio_tables(self._data())}
        kl = tables["kl (64, 32)"]
        assert kl["baseline"] == "vaemath"
        assert [(name, ratio) for name, _, ratio in kl["rows"]] == [
            ("naive", 0.5),
            ("vaemath", 1.0),
            ("torch.distributions", 3.0),
        ]
        assert kl["naive"] == {"naive": 1.0, "vaemath": 2.0, "torch.distributions": 6.0}
        # No vaemath row: the fastest is the baseline.
        floor = tables["floor"]
        assert floor["baseline"] == "test_floor[b]"
        assert [ratio for _, _, ratio in floor["rows"]] == [1.0, 3.0]
        assert floor["naive"] is None

    def test_render_and_placeholders(self, tmp_path: Path) -> None:
        bench_table = _load_script("bench_table")
        bench_dir = tmp_path / "benchmarks"
        bench_dir.mkdir()
        (bench_dir / "mmd.json").write_text(json.dumps(self._data()), encoding="utf-8")
        (bench_dir / "mmd.txt").write_text("Measured on the test machine.", encoding="utf-8")
        out = bench_table.main(bench_dir=bench_dir, out=tmp_path / "tables.rst")
        text = out.read_text(encoding="utf-8")
        assert "Measured on the test machine." in text
        assert "Test CPU, 2 logical CPUs" in text
        assert "3.00\N{MULTIPLICATION SIGN}" in text
        assert "0.50\N{MULTIPLICATION SIGN}" in text
        assert "6.00\N{MULTIPLICATION SIGN}" in text
        # Topics without a JSON file say which command fills them.
        assert "benchmarks/test_bench_gaussian.py" in text
        assert "Not measured yet" in text


class TestMakeAll:
    def test_runs_every_figure_script(self) -> None:
        make_all = _load_script("make_all")
        names = {p.name for p in make_all.scripts()}
        assert {"accuracy.py", "bench_table.py", "prior_kl.py"} <= names
        assert "make_all.py" not in names
        assert "screenshot.py" not in names

    def test_committed_outputs_exist(self) -> None:
        # Everything the pages include is committed, so the build needs no script.
        included = set()
        for page in DOCS.glob("*.rst"):
            text = page.read_text(encoding="utf-8")
            included |= set(re.findall(r"(?:include|figure|image)::\s*(_generated/\S+)", text))
        assert included
        missing = sorted(p for p in included if not (DOCS / p).exists())
        assert not missing


@pytest.fixture(scope="module")
def built_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site built offline with ``-W`` into a temporary folder."""
    reason = _sphinx_missing()
    if reason:
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("html")
    doctrees = tmp_path_factory.mktemp("doctrees")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-q",
            "-b",
            "html",
            "-d",
            str(doctrees),
            str(DOCS),
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


class TestDocsBuild:
    def test_every_public_name_has_a_page(self, built_site: Path) -> None:
        for name in vaemath.__all__:
            assert (built_site / "generated" / f"vaemath.{name}.html").exists(), name

    def test_no_network_resources(self, built_site: Path) -> None:
        remote = re.compile(r"""<(?:script|link|img)[^>]+(?:src|href)=["']?(?:https?:)?//""")
        for page in built_site.rglob("*.html"):
            found = remote.findall(page.read_text(encoding="utf-8"))
            assert not found, f"{page.name} loads {found}"
        # MathJax is served from the site itself.
        assert (built_site / "_static" / "mathjax" / "tex-chtml.js").exists()

    def test_images_resolve(self, built_site: Path) -> None:
        pages = ["math.html", "accuracy.html"]
        for name in pages:
            page = built_site / name
            srcs = re.findall(r'<img[^>]+src="([^"]+)"', page.read_text(encoding="utf-8"))
            assert srcs, name
            for src in srcs:
                assert (page.parent / src).stat().st_size > 10_000, src


@pytest.mark.skipif(_chromium() is None, reason="chromium not installed")
class TestScreenshot:
    def test_math_renders_offline(self, built_site: Path, tmp_path: Path) -> None:
        screenshot = _load_script("screenshot")
        results = screenshot.main(["math"], html=built_site, out=tmp_path)
        counts = results["math"]
        # Every formula was typeset by MathJax (none left as raw TeX).
        assert counts["math_in_source"] > 20
        assert counts["mathjax_rendered"] == counts["math_in_source"]
        png = tmp_path / "math.png"
        from PIL import Image

        with Image.open(png) as image:
            assert image.size == (1280, 2000)
            pixels = np.asarray(image.convert("L"), dtype=np.float64)
        # Not a blank page: a good share of the pixels is ink.
        assert (pixels < 128).mean() > 0.01
