"""Tests of the reference VAE's command line, comparison report and figures.

Seeds and run folders, resume taking the saved options, help texts, the
command printed on Ctrl-C, the one progress bar of a job, and the figures
(comparison error bars, colours, labels inside the frame; curves; traversals).
Training uses tiny budgets (digits, 1-2 epochs, 32 hidden units).
"""

from __future__ import annotations

import io
import json
import re
import statistics
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")

import torch

from vaemath.reference import cli, main, plots
from vaemath.reference.data import load_dataset, make_digits
from vaemath.reference.files import load_checkpoint
from vaemath.reference.model import VAE
from vaemath.reference.objectives import OBJECTIVES, TERMS
from vaemath.reference.runs import DEFAULT_SEEDS

TINY = ["--dataset", "digits", "--hidden", "32", "--latent-dim", "4", "--batch-size", "128"]
BATCHES = -(-1797 // 128)  # minibatches per epoch of TINY


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _json(path: Path):
    return json.loads(path.read_text())


class _FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


# -- seeds and the comparison ---------------------------------------------------------------


class TestCompareSeeds:
    def test_default_seeds_are_fixed_in_code(self):
        assert DEFAULT_SEEDS == (0, 1, 2)

    def test_every_objective_on_every_seed(self, tmp_path, capsys):
        out = tmp_path / "cmp"
        args = ["compare", "--objectives", "elbo,beta", *TINY, "--epochs", "1", "--out", str(out)]
        assert main([*args, "--quiet"]) == 0  # default seeds: 0, 1, 2
        stdout = capsys.readouterr().out
        for name in ("elbo", "beta"):
            for seed in DEFAULT_SEEDS:
                run = out / name / f"seed{seed}"
                config = _json(run / "config.json")
                assert (config["objective"], config["seed"]) == (name, seed)
                assert _json(run / "metrics.json")["seed"] == seed
                assert (run / "curves.png").exists()
        saved = _json(out / "compare.json")
        assert saved["objectives"] == ["elbo", "beta"]
        assert saved["seeds"] == list(DEFAULT_SEEDS)
        assert "objective" not in saved["config"]
        assert saved["config"]["epochs"] == 1
        # comparison.json: mean and sample sd over the seeds, per objective.
        table = _json(out / "comparison.json")
        assert table["objectives"] == ["elbo", "beta"]
        assert table["seeds"] == list(DEFAULT_SEEDS)
        for name in ("elbo", "beta"):
            for key in ("elbo", "tc", "mig", "mig_histogram", "active_units"):
                values = [
                    _json(out / name / f"seed{s}" / "metrics.json")["metrics"][key]
                    for s in DEFAULT_SEEDS
                ]
                stats = table["summary"][name][key]
                assert stats["values"] == pytest.approx(values, rel=1e-12)
                assert stats["mean"] == pytest.approx(statistics.fmean(values), rel=1e-12)
                assert stats["sd"] == pytest.approx(statistics.stdev(values), rel=1e-9, abs=1e-15)
                assert stats["n"] == 3
        markdown = (out / "comparison.md").read_text()
        assert "mean ± sd over seeds 0, 1, 2" in markdown
        header = next(line for line in markdown.splitlines() if line.startswith("| objective"))
        for column in ("ELBO", "TC", "| MIG |", "MIG (hist.)", "AU"):
            assert column in header
        row = next(line for line in markdown.splitlines() if line.startswith("| elbo |"))
        assert row.count("±") >= 8
        assert "elbo      3" in stdout  # the printed summary: n = 3 seeds
        # Run again with --resume: finished runs are not retrained.
        stamp = (out / "elbo" / "seed1" / "checkpoint.pt").stat().st_mtime_ns
        assert main([*args, "--quiet", "--resume"]) == 0
        assert (out / "elbo" / "seed1" / "checkpoint.pt").stat().st_mtime_ns == stamp

    def test_resume_takes_saved_objectives_seeds_and_grows_epochs(self, tmp_path):
        out = tmp_path / "cmp"
        first = ["compare", "--objectives", "beta", "--seeds", "3,1", *TINY, "--epochs", "1"]
        assert main([*first, "--out", str(out), "--quiet"]) == 0
        # Only --epochs given: the objectives, seeds and every other option are the saved ones.
        assert main(["compare", "--out", str(out), "--resume", "--epochs", "2", "--quiet"]) == 0
        assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["beta"]
        for seed in (3, 1):
            run = out / "beta" / f"seed{seed}"
            assert load_checkpoint(run)["epoch"] == 2
            config = _json(run / "config.json")
            assert config["epochs"] == 2
            assert config["hidden"] == 32
        saved = _json(out / "compare.json")
        assert saved["seeds"] == [3, 1]
        assert saved["config"]["epochs"] == 2

    @pytest.mark.parametrize(
        ("extra", "message"),
        [
            pytest.param(["--seeds", "a,1"], "--seeds takes", id="not an integer"),
            pytest.param(["--seeds", "-1"], "--seeds takes", id="negative"),
            pytest.param(["--seeds", ","], "--seeds is empty", id="empty"),
        ],
    )
    def test_bad_seeds(self, extra, message, tmp_path, capsys):
        out = tmp_path / "cmp"
        assert main(["compare", *extra, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert message in err
        assert err.count("\n") == 1
        assert not out.exists()

    def test_old_comparison_layout_is_refused(self, tmp_path, capsys):
        out = tmp_path / "old"
        out.mkdir()
        (out / "compare.json").write_text(json.dumps({"objective": "elbo", "epochs": 80}))
        assert main(["compare", "--out", str(out), "--resume"]) == 2
        assert "not a comparison of this version" in capsys.readouterr().err


# -- resume takes the saved options ---------------------------------------------------------


class TestResumeTakesSavedOptions:
    def _run(self, tmp_path) -> Path:
        out = tmp_path / "tc"
        args = ["train", "--objective", "betatc", "--tc-weight", "3", "--prior-scale", "0.5"]
        assert main([*args, *TINY, "--epochs", "1", "--out", str(out), "--quiet"]) == 0
        return out

    def test_objective_and_options_left_out_are_the_saved_ones(self, tmp_path):
        out = self._run(tmp_path)
        assert main(["train", "--out", str(out), "--resume", "--epochs", "2", "--quiet"]) == 0
        config = _json(out / "config.json")
        assert config["objective"] == "betatc"
        assert config["weights"]["tc_beta"] == 3.0
        assert config["prior_scale"] == 0.5
        assert config["epochs"] == 2  # the epochs of the resumed run, not the first one
        assert _json(out / "metrics.json")["epochs_trained"] == 2
        assert load_checkpoint(out)["epoch"] == 2

    @pytest.mark.parametrize(
        ("extra", "flag", "saved"),
        [
            pytest.param(["--objective", "beta"], "--objective", "'betatc'", id="objective"),
            pytest.param(["--tc-weight", "6"], "--tc-weight", "3.0", id="weight"),
        ],
    )
    def test_conflicting_option_names_flag_and_saved_value(
        self, extra, flag, saved, tmp_path, capsys
    ):
        out = self._run(tmp_path)
        capsys.readouterr()
        assert main(["train", "--out", str(out), "--resume", *extra, "--quiet"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert f"trained with {flag} {saved}" in err
        assert f"leave {flag} out" in err

    def test_fewer_epochs_than_trained(self, tmp_path, capsys):
        out = self._run(tmp_path)
        assert main(["train", "--out", str(out), "--resume", "--epochs", "2", "--quiet"]) == 0
        capsys.readouterr()
        assert main(["train", "--out", str(out), "--resume", "--epochs", "1", "--quiet"]) == 2
        assert "already trained 2 epochs" in capsys.readouterr().err


# -- help, docstring and the Ctrl-C message ------------------------------------------------


def _help(capsys, *args: str) -> str:
    with pytest.raises(SystemExit) as info:
        main([*args, "--help"])
    assert info.value.code == 0
    return capsys.readouterr().out


class TestHelp:
    def test_train_shows_defaults(self, capsys):
        text = " ".join(_help(capsys, "train").split())
        assert "(default runs/<objective>, relative to cwd)" in text
        assert "(default elbo; with --resume, the saved one)" in text
        from vaemath.reference.training import TrainConfig

        assert f"training epochs (default {TrainConfig().epochs})" in text

    def test_every_argument_has_help(self):
        parser = cli.build_parser()
        sub = next(a for a in parser._actions if a.choices and "train" in a.choices)
        for name, command in sub.choices.items():
            for action in command._actions:
                assert action.help, f"{name} {action.dest} has no help"

    def test_evaluate_help(self, capsys):
        text = " ".join(_help(capsys, "evaluate").split())
        assert "a run folder (holding checkpoint.pt) or a comparison folder" in text
        assert "torch CPU threads (default" in text

    def test_says_where_the_demo_writes(self, capsys):
        text = " ".join(_help(capsys).split())
        assert "runs/demo relative to the current working directory" in text
        assert "Run `python -m vaemath.reference` again to continue" in text
        doc = " ".join(cli.__doc__.split())
        assert "``runs/demo`` relative to the current working directory" in doc
        assert "Run the same command again" in doc


class TestContinueCommand:
    @pytest.mark.parametrize(
        ("argv", "command", "expected"),
        [
            pytest.param(
                ["train", "--out", "runs/x", "--epochs", "9"],
                "train",
                "python -m vaemath.reference train --out runs/x --epochs 9 --resume",
                id="adds --resume",
            ),
            pytest.param(
                ["compare", "--resume", "--out", "my runs"],
                "compare",
                "python -m vaemath.reference compare --resume --out 'my runs'",
                id="quoted, --resume kept",
            ),
            pytest.param([], "compare", "python -m vaemath.reference", id="the demo"),
            pytest.param(
                ["evaluate", "runs/demo"],
                "evaluate",
                "python -m vaemath.reference evaluate runs/demo",
                id="evaluate has no --resume",
            ),
        ],
    )
    def test_command(self, argv, command, expected):
        assert cli.continue_command(argv, command) == expected

    def test_interrupt_prints_the_command(self, monkeypatch, tmp_path, capsys):
        def interrupted(args):
            raise KeyboardInterrupt

        monkeypatch.setattr(cli, "cmd_compare", interrupted)
        argv = ["compare", "--out", str(tmp_path / "c"), "--epochs", "3"]
        assert main(argv) == 130
        err = capsys.readouterr().err
        assert err.splitlines()[-1].strip() == cli.continue_command(argv, "compare")
        assert "To continue, run:" in err


# -- progress -------------------------------------------------------------------------------


class TestOneBar:
    def test_one_bar_over_objectives_seeds_and_epochs(self, tmp_path, monkeypatch):
        terminal = _FakeTerminal()
        monkeypatch.setattr(sys, "stderr", terminal)
        args = ["compare", "--objectives", "elbo,beta", "--seeds", "0,1", *TINY, "--epochs", "2"]
        assert main([*args, "--out", str(tmp_path / "cmp")]) == 0
        text = terminal.getvalue()
        total = 2 * 2 * 2 * BATCHES
        starts = re.findall(r"train:\s+0%\|[^|]*\| 0/(\d+)", text)
        assert starts == [str(total)]  # one training bar, over the whole job
        assert re.search(rf"{total}/{total} \[\d\d:\d\d<\d\d:\d\d", text)  # elapsed<ETA
        assert "run 4/4 seed 1 beta epoch 2/2" in text


# -- figures --------------------------------------------------------------------------------


@pytest.fixture
def figures(monkeypatch):
    """The figures plots.py saves, kept open (and drawn) instead of written."""
    kept = []

    def keep(fig, path):
        fig.canvas.draw()
        kept.append(fig)

    monkeypatch.setattr(plots, "_save", keep)
    yield kept
    for fig in kept:
        plots._pyplot().close(fig)


def _stats(values):
    return {
        "mean": statistics.fmean(values),
        "sd": statistics.stdev(values) if len(values) > 1 else None,
        "n": len(values),
        "values": list(values),
    }


def _summary(names, seed=0):
    rng = np.random.default_rng(seed)
    out = {}
    for i, name in enumerate(names):
        out[name] = {
            "elbo": _stats(-200 - 10 * i + rng.normal(size=3)),
            "tc": _stats(0.5 * i + rng.normal(size=3) * 0.1),
            "mig": _stats(np.abs(rng.normal(size=3)) * 0.1),
            "active_units": _stats([3.0, 4.0, 4.0 + i]),
        }
    return out


def _bars(ax):
    from matplotlib.container import BarContainer

    (bars,) = [c for c in ax.containers if isinstance(c, BarContainer)]
    return bars


def _inside(inner, outer) -> bool:
    return (
        inner.x0 >= outer.x0 - 0.5
        and inner.x1 <= outer.x1 + 0.5
        and inner.y0 >= outer.y0 - 0.5
        and inner.y1 <= outer.y1 + 0.5
    )


class TestComparisonFigure:
    def test_error_bars_labels_and_integer_ticks(self, figures, tmp_path):
        summary = _summary(OBJECTIVES)
        plots.plot_comparison(summary, tmp_path / "c.png", title="t")
        (fig,) = figures
        renderer = fig.canvas.get_renderer()
        panels = {ax.get_title(): ax for ax in fig.axes if ax.get_title()}
        for title, key in [("ELBO (nats)", "elbo"), ("total correlation (nats)", "tc")]:
            ax = panels[title]
            bars = _bars(ax)
            assert bars.errorbar is not None
            (segments,) = bars.errorbar.lines[2]
            for name, path in zip(OBJECTIVES, segments.get_segments(), strict=True):
                s = summary[name][key]
                assert sorted(path[:, 1]) == pytest.approx(
                    [s["mean"] - s["sd"], s["mean"] + s["sd"]]
                )
        for ax in panels.values():
            box = ax.get_window_extent(renderer)
            labels = [t for t in ax.texts if t.get_text()]
            assert len(labels) == len(OBJECTIVES)
            for text in labels:
                assert _inside(text.get_window_extent(renderer), box), text.get_text()
        ticks = panels["active units"].get_yticks()
        assert np.allclose(ticks, np.round(ticks))

    def test_one_colour_per_objective_whatever_the_subset(self, figures, tmp_path):
        assert len({plots.objective_colour(n) for n in OBJECTIVES}) == len(OBJECTIVES)
        plots.plot_comparison(_summary(OBJECTIVES), tmp_path / "a.png", title="all")
        plots.plot_comparison(_summary(["infovae", "beta"]), tmp_path / "b.png", title="two")

        def colours(fig):
            bars = _bars(fig.axes[0])
            names = [t.get_text() for t in fig.axes[0].get_xticklabels()]
            return {n: tuple(p.get_facecolor()) for n, p in zip(names, bars, strict=True)}

        every, some = colours(figures[0]), colours(figures[1])
        assert some["beta"] == every["beta"]
        assert some["infovae"] == every["infovae"]


class TestCurvesFigure:
    def _history(self):
        rows = []
        for epoch in range(1, 6):
            row = dict.fromkeys(TERMS, 1.0 + 0.1 * epoch)
            row["tc"] = -0.05 * epoch
            row["epoch"], row["seconds"] = epoch, 0.1
            rows.append(row)
        rows[0]["loss"] = 500.0  # a large first epoch
        return rows

    def test_labels_note_and_limits(self, figures, tmp_path):
        plots.plot_curves(self._history(), tmp_path / "c.png", title="t", method="mss")
        (fig,) = figures
        axes = {ax.get_title(): ax for ax in fig.axes if ax.get_title()}
        estimates = [t for t in axes if "minibatch estimate" in t]
        assert len(estimates) == 3
        assert any(t.startswith("total correlation") for t in estimates)
        note = " ".join(" ".join(t.get_text() for t in fig.texts).split())
        assert "minibatch estimates (MSS estimator" in note
        assert "biased" in note
        assert "not constrained to be >= 0" in note
        for title, ax in axes.items():
            unit = "MMD²" if title.startswith("MMD") else "nats"
            assert unit in ax.get_ylabel()
        loss = axes["training loss"]
        assert loss.get_ylim()[1] < 10  # set from epochs >= 2, not by the 500
        assert any("epoch 1: 500" in t.get_text() for t in loss.texts)


class TestTraversalsFigure:
    def test_anchor_in_its_own_column_at_full_scale(self, figures, tmp_path):
        data = make_digits()
        torch.manual_seed(0)
        model = VAE(data.image_shape, 3, 16)
        kl = [0.5, 2.0, 1.0]
        plots.plot_traversals(
            model, data, tmp_path / "t.png", kl_per_unit=kl, prior_mu=0.0, prior_scale=1.0
        )
        (fig,) = figures
        (ax,) = fig.axes
        image = np.asarray(ax.images[0].get_array())
        h, w = data.image_shape
        anchor = data.images[plots.anchor_index(data)]
        # The anchor is the first tile of the first column, at the traversals' scale.
        np.testing.assert_array_equal(image[1 : 1 + h, 1 : 1 + w], anchor)
        assert image.shape == (3 * (h + 1) + 1, (w + 2) + 4 + 9 * (w + 1) + 1)
        labels = [t.get_text() for t in ax.get_yticklabels()]
        assert labels == ["anchor image", "its recon."]
        rows = [t.get_text() for t in ax.texts]
        assert rows == ["z1  KL 2.00", "z2  KL 1.00", "z0  KL 0.50"]

    def test_anchor_is_a_middle_image(self):
        data = load_dataset("shapes")
        factors = data.factors[plots.anchor_index(data)]
        middle = (np.asarray(data.factor_sizes) - 1) / 2
        assert np.all(np.abs(factors - middle) <= 0.5)


def test_device_option_is_checked(capsys):
    """``--device cuda`` without CUDA is a one-line usage error; cpu trains."""
    import torch

    from vaemath.reference.cli import main as cli_main

    if torch.cuda.is_available():  # pragma: no cover - GPU machines
        pytest.skip("a CUDA device exists here")
    assert cli_main(["train", "--device", "cuda", "--epochs", "1"]) == 2
    assert "no CUDA device" in capsys.readouterr().err
    assert cli_main(["train", "--device", "nonsense", "--epochs", "1"]) == 2
    assert "unknown torch device" in capsys.readouterr().err
