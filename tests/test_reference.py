"""Tests of the reference VAE (``vaemath.reference``): data, metrics, training, CLI.

Training runs use tiny budgets (digits, 1-6 epochs, 32 hidden units); the slow part
is starting Python + torch in the subprocess tests (SIGKILL / SIGINT / exit codes).
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")

import torch

from vaemath.reference import main
from vaemath.reference.data import make_digits, make_shapes
from vaemath.reference.files import load_checkpoint
from vaemath.reference.objectives import Weights, loss_terms
from vaemath.reference.training import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--dataset", "digits", "--hidden", "32", "--latent-dim", "4", "--batch-size", "128"]


@pytest.fixture(autouse=True)
def _restore_threads():
    # One thread, as the CLI uses: more threads crawl on a shared CPU.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _cli(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "vaemath.reference", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            pytest.fail(f"process ended early: {proc.communicate()}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"{path} never appeared")
        time.sleep(0.02)


# -- data -----------------------------------------------------------------------------


class TestMakeShapes:
    def test_factor_grid(self):
        data = make_shapes(size=16, n_scales=3, n_positions=4)
        assert data.images.shape == (3 * 3 * 4 * 4, 16, 16)
        assert data.factor_sizes == (3, 3, 4, 4)
        # Every combination of factor values exactly once.
        combos = {tuple(row) for row in data.factors.tolist()}
        assert len(combos) == len(data)
        assert data.factors.min(0).tolist() == [0, 0, 0, 0]
        assert data.factors.max(0).tolist() == [2, 2, 3, 3]
        assert set(np.unique(data.images).tolist()) <= {0.0, 1.0}

    def test_factors_drive_the_pixels(self):
        data = make_shapes(jitter=0.0)
        area = data.images.sum((1, 2))
        cols = np.arange(data.images.shape[2]) + 0.5
        cx = (data.images.sum(1) * cols).sum(1) / area
        rows = np.arange(data.images.shape[1]) + 0.5
        cy = (data.images.sum(2) * rows).sum(1) / area
        shape, scale, px, py = data.factors.T
        for s in range(3):
            for k in range(data.factor_sizes[1] - 1):
                # Same shape, larger scale -> strictly larger area.
                a0 = area[(shape == s) & (scale == k)].mean()
                a1 = area[(shape == s) & (scale == k + 1)].mean()
                assert a1 > a0
        for k in range(data.factor_sizes[2] - 1):
            assert cx[px == k + 1].mean() > cx[px == k].mean()
            assert cy[py == k + 1].mean() > cy[py == k].mean()
        # The x position moves the centroid vertically by rasterisation only (< 0.1 px).
        assert np.ptp([cy[(px == k) & (py == 0)].mean() for k in range(12)]) < 0.1

    def test_deterministic(self):
        a, b = make_shapes(seed=3), make_shapes(seed=3)
        np.testing.assert_array_equal(a.images, b.images)
        np.testing.assert_array_equal(a.factors, b.factors)
        assert not np.array_equal(a.images, make_shapes(seed=4).images)
        np.testing.assert_array_equal(
            make_shapes(jitter=0.0, seed=1).images, make_shapes(jitter=0.0, seed=2).images
        )

    def test_digits(self):
        data = make_digits()
        assert data.images.shape == (1797, 8, 8)
        assert data.images.min() >= 0.0
        assert data.images.max() <= 1.0
        assert sorted(np.unique(data.factors).tolist()) == list(range(10))


# -- objectives -------------------------------------------------------------------------


def _batch(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = (torch.rand(16, 4, 4, generator=gen) > 0.5).double()
    logits = torch.randn(16, 4, 4, generator=gen, dtype=torch.float64)
    mu = torch.randn(16, 3, generator=gen, dtype=torch.float64)
    logvar = 0.3 * torch.randn(16, 3, generator=gen, dtype=torch.float64)
    z = mu + torch.exp(0.5 * logvar) * torch.randn(16, 3, generator=gen, dtype=torch.float64)
    return x, logits, z, mu, logvar


def _reference_recon_kl(x, logits, mu, logvar, *, m, s):
    x, logits, mu, logvar = (t.numpy() for t in (x, logits, mu, logvar))
    p = 1 / (1 + np.exp(-logits))
    recon = -(x * np.log(p) + (1 - x) * np.log1p(-p)).sum((1, 2)).mean()
    var = np.exp(logvar)
    kl = 0.5 * (var / s**2 + (mu - m) ** 2 / s**2 - 1 - logvar + 2 * np.log(s)).sum(1).mean()
    return recon, kl


class TestLossTerms:
    @pytest.mark.parametrize(
        ("m", "s"), [pytest.param(0.0, 1.0, id="standard"), pytest.param(0.5, 0.1, id="N(.5,.1^2)")]
    )
    @pytest.mark.parametrize(
        ("objective", "weights", "kl_weight"),
        [
            pytest.param("elbo", Weights(), 1.0, id="elbo"),
            pytest.param("beta", Weights(beta=3.0), 3.0, id="beta"),
            # alpha + lambda - 1 = 0 switches the MMD off: loss = rec + (1 - alpha) KL.
            pytest.param("infovae", Weights(info_alpha=0.25, info_lambda=0.75), 0.75, id="infovae"),
        ],
    )
    def test_against_closed_form(self, objective, weights, kl_weight, m, s):
        x, logits, z, mu, logvar = _batch()
        terms = loss_terms(
            objective,
            x,
            logits=logits,
            z=z,
            mu=mu,
            logvar=logvar,
            prior_mu=m,
            prior_scale=s,
            weights=weights,
            dataset_size=100,
            method="mws",
        )
        recon, kl = _reference_recon_kl(x, logits, mu, logvar, m=m, s=s)
        assert float(terms["recon"]) == pytest.approx(recon, rel=1e-12)
        assert float(terms["kl"]) == pytest.approx(kl, rel=1e-12)
        assert float(terms["loss"]) == pytest.approx(recon + kl_weight * kl, rel=1e-12)

    @pytest.mark.parametrize("method", ["mws", "mss"])
    def test_betatc_unit_weights_telescope(self, method):
        # With alpha = beta = gamma = 1 the three terms sum to the batch mean of
        # log q(z|x) - log p(z) (Chen et al. 2018, eq. 2), for either estimator.
        x, logits, z, mu, logvar = _batch(1)
        weights = Weights(tc_alpha=1.0, tc_beta=1.0, tc_gamma=1.0)
        m, s = 0.5, 0.1
        terms = loss_terms(
            "betatc",
            x,
            logits=logits,
            z=z,
            mu=mu,
            logvar=logvar,
            prior_mu=m,
            prior_scale=s,
            weights=weights,
            dataset_size=100,
            method=method,
        )
        zn, mun, lvn = z.numpy(), mu.numpy(), logvar.numpy()
        log_qzx = (-0.5 * ((zn - mun) ** 2 / np.exp(lvn) + lvn + np.log(2 * np.pi))).sum(1)
        log_pz = (-0.5 * ((zn - m) ** 2 / s**2 + 2 * np.log(s) + np.log(2 * np.pi))).sum(1)
        recon, _ = _reference_recon_kl(x, logits, mu, logvar, m=m, s=s)
        expected = recon + (log_qzx - log_pz).mean()
        assert float(terms["loss"]) == pytest.approx(expected, rel=1e-9)

    def test_unknown_objective(self):
        x, logits, z, mu, logvar = _batch()
        with pytest.raises(ValueError, match="unknown objective"):
            loss_terms(
                "vqvae",
                x,
                logits=logits,
                z=z,
                mu=mu,
                logvar=logvar,
                prior_mu=0.0,
                prior_scale=1.0,
                weights=Weights(),
                dataset_size=100,
                method="mws",
            )


# -- training and the CLI -----------------------------------------------------------------


class TestTrainCommand:
    @pytest.mark.parametrize("objective", ["elbo", "beta", "betatc", "infovae"])
    def test_tiny_run_per_objective(self, objective, tmp_path, capsys):
        out = tmp_path / objective
        args = ["train", "--objective", objective, *TINY, "--epochs", "2", "--out", str(out)]
        args += ["--prior-mu", "0.5", "--prior-scale", "0.5", "--quiet"]
        assert main(args) == 0
        record = json.loads((out / "metrics.json").read_text())
        assert record["epochs_trained"] == 2
        metrics = record["metrics"]
        assert math.isfinite(metrics["elbo"])
        assert metrics["elbo"] == pytest.approx(-(metrics["recon"] + metrics["kl"]))
        assert 0.0 <= metrics["mig"] <= 1.0
        assert 0 <= metrics["active_units"] <= 4
        history = (out / "history.csv").read_text().splitlines()
        assert history[0].split(",")[:4] == ["epoch", "seconds", "loss", "elbo"]
        assert len(history) == 3
        for name in ("reconstructions", "traversals", "curves"):
            assert (out / f"{name}.png").stat().st_size > 1000
        assert load_checkpoint(out)["epoch"] == 2
        assert objective in capsys.readouterr().out

    def test_compare_writes_table_and_chart(self, tmp_path, capsys):
        out = tmp_path / "cmp"
        args = ["compare", "--objectives", "elbo,beta", *TINY, "--epochs", "1", "--out", str(out)]
        assert main([*args, "--seeds", "0", "--quiet"]) == 0
        assert capsys.readouterr().err == ""  # --quiet: no progress at all
        table = (out / "comparison.md").read_text()
        assert "| elbo |" in table
        assert "| beta |" in table
        assert (out / "comparison.png").stat().st_size > 1000
        # evaluate on the compare folder re-evaluates both runs to the same numbers.
        before = json.loads((out / "comparison.json").read_text())
        assert main(["evaluate", str(out), "--quiet"]) == 0
        after = json.loads((out / "comparison.json").read_text())
        assert after["metrics"]["elbo"]["seed0"]["elbo"] == pytest.approx(
            before["metrics"]["elbo"]["seed0"]["elbo"], rel=1e-12
        )

    def test_resume_extends_and_matches_uninterrupted(self, tmp_path):
        data = make_digits()
        config = TrainConfig(dataset="digits", hidden=32, latent_dim=4, epochs=3, seed=5)
        _, straight, _ = train(config, tmp_path / "a", progress=False, dataset=data)
        first = TrainConfig(**{**config.__dict__, "epochs": 1})
        train(first, tmp_path / "b", progress=False, dataset=data)
        _, resumed, _ = train(config, tmp_path / "b", resume=True, progress=False, dataset=data)
        assert [r["epoch"] for r in resumed] == [1, 2, 3]
        for a, b in zip(straight, resumed, strict=True):
            assert a["loss"] == b["loss"]


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["train", "--objective", "vqvae"], id="unknown objective"),
        pytest.param(["train", "--beta", "-1"], id="negative beta"),
        pytest.param(["train", "--tc-weight", "-0.5"], id="negative tc weight"),
        pytest.param(["train", "--prior-scale", "0"], id="zero prior scale"),
        pytest.param(["train", "--prior-scale", "-0.1"], id="negative prior scale"),
        pytest.param(["train", "--prior-scale", "nan"], id="nan prior scale"),
        pytest.param(["train", "--method", "xyz"], id="unknown method"),
        pytest.param(["train", "--dataset", "mnist"], id="unknown dataset"),
        pytest.param(["train", "--epochs", "0"], id="zero epochs"),
        pytest.param(["compare", "--objectives", "elbo,nope"], id="unknown in compare"),
        pytest.param(["train", "--no-such-flag"], id="unknown flag"),
        pytest.param(["frobnicate"], id="unknown command"),
    ],
)
def test_bad_arguments_exit_2(args, tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("python -m vaemath.reference: error:")
    assert not out.exists()


class TestRunFolderProtection:
    def _run(self, tmp_path) -> Path:
        out = tmp_path / "run"
        assert main(["train", *TINY, "--epochs", "1", "--out", str(out), "--quiet"]) == 0
        return out

    def _snapshot(self, folder: Path) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}

    @pytest.mark.parametrize(
        "extra",
        [
            pytest.param(["--resume", "--objective", "beta"], id="resume other objective"),
            pytest.param(["--resume", "--prior-scale", "0.1"], id="resume other prior"),
            pytest.param(["--resume", "--seed", "9"], id="resume other seed"),
            pytest.param([], id="no resume over a run"),
        ],
    )
    def test_refuses_and_keeps_files(self, extra, tmp_path, capsys):
        out = self._run(tmp_path)
        capsys.readouterr()
        before = self._snapshot(out)
        assert main(["train", *extra, "--out", str(out), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert self._snapshot(out) == before

    def test_unwritable_output(self, tmp_path, capsys):
        blocker = tmp_path / "a_file"
        blocker.write_text("not a folder")
        assert main(["train", *TINY, "--out", str(blocker / "run"), "--quiet"]) == 2
        assert "not writable" in capsys.readouterr().err
        assert blocker.read_text() == "not a folder"


class TestProcessControl:
    """The real entry point in a subprocess: SIGKILL + --resume, SIGINT, exit status."""

    def test_resume_after_sigkill(self, tmp_path):
        out = tmp_path / "run"
        proc = _cli("train", *TINY, "--epochs", "10", "--out", str(out), "--quiet")
        _wait_for(out / "checkpoint.pt", proc)
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        assert proc.returncode == -signal.SIGKILL
        done = load_checkpoint(out)["epoch"]
        assert 1 <= done < 10
        resumed = _cli("train", "--out", str(out), "--resume", "--epochs", "12", "--quiet")
        stdout, stderr = resumed.communicate(timeout=120)
        assert resumed.returncode == 0, stderr
        state = load_checkpoint(out)
        assert state["epoch"] == 12
        assert [row["epoch"] for row in state["history"]] == list(range(1, 13))
        assert len((out / "history.csv").read_text().splitlines()) == 13
        assert json.loads((out / "metrics.json").read_text())["epochs_trained"] == 12
        assert "train ->" in stdout

    def test_sigint_saves_and_exits(self, tmp_path):
        out = tmp_path / "run"
        args = ["train", *TINY, "--epochs", "500", "--out", str(out), "--quiet"]
        proc = _cli(*args)
        _wait_for(out / "checkpoint.pt", proc)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 130
        # The exact command that continues: the original arguments plus --resume.
        again = shlex.join(["python", "-m", "vaemath.reference", *args, "--resume"])
        assert stderr.splitlines()[-1].strip() == again
        assert "Traceback" not in stderr
        state = load_checkpoint(out)
        assert 1 <= state["epoch"] < 500
        assert len(state["history"]) == state["epoch"]

    def test_bad_argument_exit_status(self, tmp_path):
        proc = _cli("train", "--objective", "nope", "--out", str(tmp_path / "x"))
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 2
        assert stdout == ""
        assert len(stderr.splitlines()) == 1

    def test_core_does_not_import_reference(self):
        code = "import sys, vaemath; print('vaemath.reference' in sys.modules)"
        result = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ},
        )
        assert result.stdout.strip() == "False"


def test_no_arguments_runs_the_demo(monkeypatch):
    from vaemath.reference import cli

    seen = {}

    def fake_compare(args):
        seen.update(vars(args))
        return 0

    monkeypatch.setattr(cli, "cmd_compare", fake_compare)
    assert cli.main([]) == 0
    assert seen["command"] == "compare"
    assert seen["out"] == Path("runs/demo")
    assert seen["resume"] is True
    assert seen["objectives"] is None
    assert seen["seeds"] is None  # the seeds fixed in code: DEFAULT_SEEDS
    assert seen["dataset"] is None  # the built-in defaults: shapes


# -- progress and the missing extra -------------------------------------------------------


class _FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _progress_lines(err: str, label: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith(f"{label}:")]


class TestProgress:
    """One bar per job; off a terminal one final line and no carriage returns."""

    def test_compare_and_evaluate_write_one_line_per_job(self, tmp_path, capsys):
        out = tmp_path / "cmp"
        args = ["compare", "--objectives", "elbo,beta", *TINY, "--epochs", "2", "--out", str(out)]
        assert main([*args, "--seeds", "0,1"]) == 0
        err = capsys.readouterr().err
        assert "\r" not in err
        batches = 2 * 2 * 2 * math.ceil(1797 / 128)  # objectives x seeds x epochs x batches
        train_lines = _progress_lines(err, "train")
        assert len(train_lines) == 1
        assert f"{batches}/{batches}" in train_lines[0]
        eval_lines = _progress_lines(err, "evaluate")
        assert len(eval_lines) == 1
        assert f"{4 * 1797}/{4 * 1797}" in eval_lines[0]
        assert len(err.splitlines()) == 2
        assert main(["evaluate", str(out)]) == 0
        err = capsys.readouterr().err
        assert "\r" not in err
        assert len(_progress_lines(err, "evaluate")) == 1
        assert len(err.splitlines()) == 1

    def test_train_into_a_log_file(self, tmp_path, monkeypatch):
        config = TrainConfig(dataset="digits", hidden=32, latent_dim=4, batch_size=128, epochs=2)
        log = tmp_path / "train.log"
        with log.open("w") as handle:
            monkeypatch.setattr(sys, "stderr", handle)
            train(config, tmp_path / "run", progress=True, dataset=make_digits())
        text = log.read_text()
        assert "\r" not in text
        assert len(text.splitlines()) == 1
        assert text.startswith("train elbo: 100%")
        assert "30/30" in text

    def test_terminal_bar_shows_total_and_eta(self, tmp_path, monkeypatch):
        terminal = _FakeTerminal()
        monkeypatch.setattr(sys, "stderr", terminal)
        config = TrainConfig(dataset="digits", hidden=32, latent_dim=4, batch_size=128, epochs=2)
        train(config, tmp_path / "run", progress=True, dataset=make_digits())
        text = terminal.getvalue()
        assert "\r" in text  # redrawn in place
        assert "0/30 [00:00<?" in text  # the total from the start
        assert re.search(r"30/30 \[\d\d:\d\d<\d\d:\d\d", text)  # elapsed<remaining


class TestMissingExtra:
    """Without torch / matplotlib / scikit-learn: one line on stderr, exit status 2."""

    def _check(self, result: subprocess.CompletedProcess, module: str) -> None:
        assert result.returncode == 2, result.stderr
        assert result.stdout == ""
        lines = result.stderr.splitlines()
        assert len(lines) == 1, result.stderr
        assert f"needs {module} (missing)" in lines[0]
        assert 'pip install "vaemath[demo]"' in lines[0]

    def test_no_torch(self, tmp_path):
        fake = tmp_path / "fake"
        fake.mkdir()
        (fake / "torch.py").write_text(
            'raise ModuleNotFoundError("No module named \'torch\'", name="torch")\n'
        )
        env = {**os.environ, "PYTHONPATH": str(fake)}
        commands = [[sys.executable, "-m", "vaemath.reference"]]
        script = Path(sys.executable).with_name("vaemath-reference")
        if script.exists():  # the console script of pyproject.toml
            commands.append([str(script), "train", "--help"])
        for command in commands:
            result = subprocess.run(
                command,
                check=False,
                cwd=tmp_path,
                capture_output=True,
                text=True,
                env=env,
                timeout=60,
            )
            self._check(result, "torch")

    @pytest.mark.parametrize("module", ["matplotlib", "sklearn"])
    def test_no_lazily_imported_module(self, module, tmp_path):
        # sys.modules[name] = None makes the module unimportable (and unfindable).
        code = (
            f"import sys; sys.modules[{module!r}] = None; "
            "from vaemath.reference.cli import main; raise SystemExit(main())"
        )
        result = subprocess.run(
            [sys.executable, "-c", code],
            check=False,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        self._check(result, module)
