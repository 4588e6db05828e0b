"""What a finished run leaves behind: metrics.json, figures, comparison files, summary.

:func:`finish_runs` evaluates trained models under one progress bar and writes
each run's ``metrics.json`` and figures; :func:`write_comparison` writes the
files of a comparison; :func:`print_summary` prints the table on stdout.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import torch

from vaemath._lib._progress import Progress

from .data import Dataset
from .files import atomic_write_text
from .metrics import evaluate
from .model import VAE
from .objectives import rbf_bandwidth
from .plots import plot_comparison, plot_curves, plot_reconstructions, plot_traversals
from .training import TrainConfig

__all__ = [
    "SUMMARY_HEADER",
    "TrainedRun",
    "comparison_markdown",
    "finish_runs",
    "print_summary",
    "summary_line",
    "write_comparison",
]

SUMMARY_HEADER = (
    f"{'':<8} {'ELBO':>9} {'recon':>8} {'KL':>7} {'MI':>6} {'TC':>6} {'dimKL':>6} "
    f"{'AU':>3} {'MIG':>6}"
)


class TrainedRun(NamedTuple):
    """A trained model with what :func:`finish_runs` needs to report on it."""

    model: VAE
    history: list[dict[str, float]]
    data: Dataset
    config: TrainConfig
    run_dir: Path


# -- evaluating and writing one run -------------------------------------------------------


def _share(bar: Progress) -> Callable[[int, int], None]:
    """A ``progress(done, total)`` callback that adds one evaluation's rows to ``bar``."""
    seen = 0

    def report(done: int, total: int) -> None:
        nonlocal seen
        bar.update(done - seen)
        seen = done

    return report


def _write_run(run: TrainedRun, metrics: dict[str, Any]) -> dict[str, Any]:
    """Write ``metrics.json`` and the three figures of one run; return its record."""
    config, run_dir = run.config, run.run_dir
    record = {
        "objective": config.objective,
        "config": config.to_dict(),
        "epochs_trained": len(run.history),
        "train_seconds": float(sum(row["seconds"] for row in run.history)),
        "metrics": metrics,
        "environment": {
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "python": platform.python_version(),
        },
    }
    atomic_write_text(run_dir / "metrics.json", json.dumps(record, indent=2) + "\n")
    plot_reconstructions(run.model, run.data, run_dir / "reconstructions.png")
    plot_traversals(
        run.model,
        run.data,
        run_dir / "traversals.png",
        kl_per_unit=metrics["kl_per_unit"],
        prior_mu=config.prior_mu,
        prior_scale=config.prior_scale,
    )
    plot_curves(
        run.history, run_dir / "curves.png", title=f"{config.objective} on {config.dataset}"
    )
    return record


def finish_runs(runs: Mapping[str, TrainedRun], *, progress: bool) -> dict[str, dict[str, Any]]:
    """Evaluate every run (one progress bar over all), then write its files.

    Parameters
    ----------
    runs : mapping of str to TrainedRun
        The runs, by objective.
    progress : bool
        Show one progress bar over the evaluation of every run.

    Returns
    -------
    dict
        The record written to each run's ``metrics.json``, by objective.
    """
    total = sum(len(run.data) for run in runs.values())
    records = {}
    with Progress(total, desc="evaluate", enabled=progress, unit="image") as bar:
        metrics = {}
        for name, run in runs.items():
            config = run.config
            bar.update(0, postfix=name)
            metrics[name] = evaluate(
                run.model,
                run.data,
                prior_mu=config.prior_mu,
                prior_scale=config.prior_scale,
                seed=config.seed,
                bandwidth=rbf_bandwidth(config.weights, config.latent_dim, config.prior_scale),
                progress=_share(bar) if progress else False,
            )
    for name, run in runs.items():
        records[name] = _write_run(run, metrics[name])
    return records


# -- comparisons and the summary ----------------------------------------------------------


def summary_line(name: str, m: dict[str, Any]) -> str:
    """One row of the summary table (under :data:`SUMMARY_HEADER`) for metrics ``m``."""
    return (
        f"{name:<8} {m['elbo']:>9.2f} {m['recon']:>8.2f} {m['kl']:>7.2f} {m['mi']:>6.2f} "
        f"{m['tc']:>6.2f} {m['dimkl']:>6.2f} {m['active_units']:>3d} {m['mig']:>6.3f}"
    )


def comparison_markdown(records: dict[str, dict[str, Any]], config: TrainConfig) -> str:
    """The ``comparison.md`` table of ``records`` (by objective), trained with ``config``.

    Parameters
    ----------
    records : dict
        The records of :func:`finish_runs`, by objective.
    config : TrainConfig
        The shared configuration of the comparison.

    Returns
    -------
    str
        A caption, a Markdown table with one row per objective and the weights.
    """
    lines = [
        f"Objectives compared on `{config.dataset}` (seed {config.seed}, {config.epochs} epochs, "
        f"batch {config.batch_size}, D = {config.latent_dim}, prior N({config.prior_mu:g}, "
        f"{config.prior_scale:g}^2), {config.method.upper()} for beta-TCVAE). Full-dataset "
        "metrics in nats per image; MI/TC/dimension-wise KL from "
        "`vaemath.dataset_decomposition`; AU = active units; MIG vs the known factors.",
        "",
        "| objective | ELBO | recon | KL | MI | TC | dim-wise KL | AU | MIG | train s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, rec in records.items():
        m = rec["metrics"]
        lines.append(
            f"| {name} | {m['elbo']:.2f} | {m['recon']:.2f} | {m['kl']:.2f} | {m['mi']:.2f} | "
            f"{m['tc']:.2f} | {m['dimkl']:.2f} | {m['active_units']} | {m['mig']:.3f} | "
            f"{rec['train_seconds']:.0f} |"
        )
    w = config.weights
    lines += [
        "",
        f"Weights: beta-VAE beta = {w.beta:g}; beta-TCVAE alpha/beta/gamma = "
        f"{w.tc_alpha:g}/{w.tc_beta:g}/{w.tc_gamma:g}; InfoVAE alpha = {w.info_alpha:g}, "
        f"lambda = {w.info_lambda:g}, RBF bandwidth = "
        f"{w.bandwidth if w.bandwidth > 0 else 'sqrt(D) * prior scale'}.",
    ]
    return "\n".join(lines) + "\n"


def write_comparison(out: Path, records: dict[str, dict[str, Any]], config: TrainConfig) -> None:
    """Write ``comparison.md``, ``comparison.json`` and ``comparison.png`` into ``out``."""
    atomic_write_text(out / "comparison.md", comparison_markdown(records, config))
    atomic_write_text(
        out / "comparison.json",
        json.dumps({n: r["metrics"] for n, r in records.items()}, indent=2) + "\n",
    )
    plot_comparison(
        {n: r["metrics"] for n, r in records.items()},
        out / "comparison.png",
        title=f"objectives on {config.dataset}, {config.epochs} epochs, seed {config.seed}",
    )


def print_summary(title: str, records: dict[str, dict[str, Any]], elapsed: float) -> None:
    """Print the summary table of ``records`` (by objective) on stdout."""
    print(title)
    print(SUMMARY_HEADER)
    for name, rec in records.items():
        print(summary_line(name, rec["metrics"]))
    per_factor = {n: rec["metrics"]["mig_per_factor"] for n, rec in records.items()}
    for name, gaps in per_factor.items():
        text = ", ".join(f"{k} {v:.2f}" for k, v in gaps.items())
        print(f"  MIG per factor, {name}: {text}")
    print(f"wall time {elapsed:.1f} s")
