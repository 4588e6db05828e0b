"""What a finished run leaves behind: metrics.json, figures, comparison files, summary.

:func:`finish_runs` evaluates trained models under one progress bar and writes
each run's ``metrics.json`` and figures; :func:`write_comparison` writes the
files of a comparison (mean ± sd over seeds per objective);
:func:`print_summary` and :func:`print_comparison` print tables on stdout.

Keys of ``metrics.json`` ``"metrics"`` read here: ``elbo``, ``recon``, ``kl``,
``mi``, ``tc``, ``dimkl``, ``active_units``, ``mig``, ``mig_histogram``,
``mig_per_factor`` and ``kl_per_unit`` (traversals); ``mig_with_shape`` and any
other scalar key are summarised when present.
"""

from __future__ import annotations

import math
import platform
import statistics
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch

from vaemath._lib._progress import Progress

from .data import Dataset, load_dataset
from .files import CHECKPOINT, atomic_write_text, load_checkpoint, write_json
from .metrics import evaluate
from .model import VAE
from .objectives import rbf_bandwidth
from .plots import plot_comparison, plot_curves, plot_reconstructions, plot_traversals
from .priors import Prior
from .runs import UsageError, compare_record
from .training import TrainConfig, build_model

__all__ = [
    "COLUMNS",
    "LabelledProgress",
    "SUMMARY_HEADER",
    "TrainedRun",
    "comparison_markdown",
    "finish_runs",
    "group_by_objective",
    "load_run",
    "print_comparison",
    "print_summary",
    "summarise",
    "summary_line",
    "write_comparison",
]

SUMMARY_HEADER = (
    f"{'':<8} {'ELBO':>9} {'recon':>8} {'KL':>7} {'MI':>6} {'TC':>6} {'dimKL':>6} "
    f"{'AU':>3} {'MIG':>6} {'MIG-h':>6}"
)

# Columns of comparison.md: (key, header, format); "train_seconds" is the record's.
COLUMNS = (
    ("elbo", "ELBO", ".2f"),
    ("recon", "recon", ".2f"),
    ("kl", "KL", ".2f"),
    ("mi", "MI", ".2f"),
    ("tc", "TC", ".2f"),
    ("dimkl", "dim-wise KL", ".2f"),
    ("active_units", "AU", ".1f"),
    ("mig", "MIG", ".3f"),
    ("mig_histogram", "MIG (hist.)", ".3f"),
    ("mig_with_shape", "MIG (all factors)", ".3f"),
    ("train_seconds", "train s", ".0f"),
)


class TrainedRun(NamedTuple):
    """A trained model with what :func:`finish_runs` needs to report on it."""

    model: VAE
    history: list[dict[str, float]]
    data: Dataset
    config: TrainConfig
    run_dir: Path


class LabelledProgress(Progress):
    """The one bar of a whole job; ``label`` (the current run) prefixes the postfix."""

    label = ""

    def update(self, n: int = 1, postfix: str | None = None) -> None:
        """Advance by ``n`` steps; ``postfix`` (after ``label``) replaces the text."""
        if postfix is not None and self.label:
            postfix = f"{self.label} {postfix}"
        super().update(n, postfix)


def load_run(run_dir: Path, datasets: dict[str, Dataset]) -> TrainedRun:
    """The trained model saved in ``run_dir`` (``datasets`` caches the data by name).

    Raises
    ------
    UsageError
        When ``run_dir`` holds no checkpoint.
    """
    try:
        state = load_checkpoint(run_dir)
    except FileNotFoundError:
        msg = f"{str(run_dir)!r} holds no {CHECKPOINT}"
        raise UsageError(msg) from None
    config = TrainConfig.from_dict(state["config"])
    if config.dataset not in datasets:
        datasets[config.dataset] = load_dataset(config.dataset)
    data = datasets[config.dataset]
    model = build_model(config, data)
    model.load_state_dict(state["model"])
    return TrainedRun(model, list(state["history"]), data, config, run_dir)


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
        "seed": config.seed,
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
    write_json(run_dir / "metrics.json", record)
    plot_reconstructions(run.model, run.data, run_dir / "reconstructions.png")
    scores, score_name = metrics["kl_per_unit"], "KL"
    if "mu_variance_per_unit" in metrics:  # the uniform prior: every KL is infinite
        scores, score_name = metrics["mu_variance_per_unit"], "Var[mu]"
    plot_traversals(
        run.model,
        run.data,
        run_dir / "traversals.png",
        kl_per_unit=scores,
        prior=Prior.of(config),
        score_name=score_name,
    )
    plot_curves(
        run.history,
        run_dir / "curves.png",
        title=f"{config.objective} on {config.dataset}, seed {config.seed}",
    )
    return record


def finish_runs(runs: Mapping[str, TrainedRun], *, progress: bool) -> dict[str, dict[str, Any]]:
    """Evaluate every run (one progress bar over all), then write its files.

    Parameters
    ----------
    runs : mapping of str to TrainedRun
        The runs, by label (``"elbo"``, ``"elbo/seed0"``: shown on the bar).
    progress : bool
        Show one progress bar over the evaluation of every run.

    Returns
    -------
    dict
        The record written to each run's ``metrics.json``, by label.
    """
    total = sum(len(run.data) for run in runs.values())
    metrics = {}
    with Progress(total, desc="evaluate", enabled=progress, unit="image") as bar:
        for i, (label, run) in enumerate(runs.items(), 1):
            config, prior = run.config, Prior.of(run.config)
            bar.update(0, postfix=f"run {i}/{len(runs)} {label}")
            scale = prior.sd(config.latent_dim)
            metrics[label] = evaluate(
                run.model,
                run.data,
                prior=prior,
                seed=config.seed,
                bandwidth=rbf_bandwidth(config.weights, config.latent_dim, scale),
                progress=_share(bar) if progress else False,
            )
    return {label: _write_run(run, metrics[label]) for label, run in runs.items()}


# -- comparisons and the summary ----------------------------------------------------------


def summary_line(name: str, m: dict[str, Any]) -> str:
    """One row of the summary table (under :data:`SUMMARY_HEADER`) for metrics ``m``."""
    return (
        f"{name:<8} {m['elbo']:>9.2f} {m['recon']:>8.2f} {m['kl']:>7.2f} {m['mi']:>6.2f} "
        f"{m['tc']:>6.2f} {m['dimkl']:>6.2f} {m['active_units']:>3d} {m['mig']:>6.3f} "
        f"{m['mig_histogram']:>6.3f}"
    )


def _scalar(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def summarise(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Mean and sample standard deviation over seeds of every scalar metric.

    Parameters
    ----------
    records : sequence of dict
        The ``metrics.json`` records of one objective, one per seed.

    Returns
    -------
    dict
        By metric key (and ``train_seconds``): ``mean``, ``sd`` (``None`` for a
        single seed or a non-finite value: the KL terms of a uniform prior are
        infinite), ``n`` and the per-seed ``values``.
    """
    rows = [{**rec["metrics"], "train_seconds": rec["train_seconds"]} for rec in records]
    keys = [k for k, v in rows[0].items() if _scalar(v) and all(_scalar(r.get(k)) for r in rows)]
    out = {}
    for key in keys:
        values = [float(r[key]) for r in rows]
        out[key] = {
            "mean": statistics.fmean(values),
            "sd": statistics.stdev(values)
            if len(values) > 1 and all(map(math.isfinite, values))
            else None,
            "n": len(values),
            "values": values,
        }
    return out


def group_by_objective(
    records: Mapping[str, dict[str, Any]],
) -> dict[str, dict[int, dict[str, Any]]]:
    """Records (any labels) regrouped by objective, then seed, in first-seen order."""
    grouped: dict[str, dict[int, dict[str, Any]]] = {}
    for rec in records.values():
        grouped.setdefault(rec["objective"], {})[int(rec["config"]["seed"])] = rec
    return grouped


def _cell(stats: dict[str, Any] | None, fmt: str) -> str:
    if stats is None:
        return "n/a"
    if stats["sd"] is None:
        return f"{stats['mean']:{fmt}}"
    return f"{stats['mean']:{fmt}} ± {stats['sd']:{fmt}}"


def comparison_markdown(
    summary: dict[str, dict[str, dict[str, Any]]],
    config: TrainConfig,
    seeds: Sequence[int],
    *,
    left_out: Sequence[str] = (),
) -> str:
    """The ``comparison.md`` table: one row per objective, mean ± sd over seeds.

    Parameters
    ----------
    summary : dict
        :func:`summarise` of each objective's records, by objective.
    config : TrainConfig
        The shared configuration of the comparison.
    seeds : sequence of int
        The seeds compared.
    left_out : sequence of str
        Factors the headline ``mig`` leaves out (then the ``mig_with_shape``
        column, over every factor, is shown too).

    Returns
    -------
    str
        A caption, a Markdown table and the weights.
    """
    present = [c for c in COLUMNS if any(c[0] in s for s in summary.values())]
    shape_note = ""
    if left_out:
        shape_note = (
            f" MIG leaves out {', '.join(left_out)} (Chen et al.'s dSprites protocol); "
            "MIG (all factors) keeps every factor."
        )
    else:  # the headline MIG already covers every factor
        present = [c for c in present if c[0] != "mig_with_shape"]
    lines = [
        f"Objectives compared on `{config.dataset}`, mean ± sd over seeds "
        f"{', '.join(map(str, seeds))} (sample sd over the n runs of each objective; the "
        f"seeds are fixed in code before any result is seen), {config.epochs} epochs, "
        f"batch {config.batch_size}, D = {config.latent_dim}, prior "
        f"{Prior.of(config).describe()}, {config.method.upper()} for beta-TCVAE. Full-dataset "
        "metrics in nats per image; MI/TC/dimension-wise KL from "
        "`vaemath.dataset_decomposition`; AU = active units; MIG = Chen et al.'s mutual "
        "information gap vs the known factors (`vaemath.mutual_information_gap`, mixture "
        "estimator); MIG (hist.) = disentanglement_lib's 20-bin histogram MIG of the "
        f"posterior means.{shape_note}",
        "",
        "| objective | n | " + " | ".join(header for _, header, _ in present) + " |",
        "|---|---:|" + "---:|" * len(present),
    ]
    for name, stats in summary.items():
        n = max(s["n"] for s in stats.values())
        cells = [_cell(stats.get(key), fmt) for key, _, fmt in present]
        lines.append(f"| {name} | {n} | " + " | ".join(cells) + " |")
    w = config.weights
    lines += [
        "",
        f"Weights: beta-VAE beta = {w.beta:g}; beta-TCVAE alpha/beta/gamma = "
        f"{w.tc_alpha:g}/{w.tc_beta:g}/{w.tc_gamma:g}; InfoVAE alpha = {w.info_alpha:g}, "
        f"lambda = {w.info_lambda:g}, RBF bandwidth = "
        f"{w.bandwidth if w.bandwidth > 0 else 'sqrt(D) * prior scale'}.",
    ]
    return "\n".join(lines) + "\n"


def _left_out(records: Mapping[str, dict[str, Any]]) -> list[str]:
    """Factors of ``mig_per_factor`` that the headline ``mig`` (``mig_factors``) leaves out."""
    out: dict[str, None] = {}
    for rec in records.values():
        m = rec["metrics"]
        if "mig_factors" in m:
            out.update(
                dict.fromkeys(k for k in m.get("mig_per_factor", {}) if k not in m["mig_factors"])
            )
    return list(out)


def write_comparison(
    out: Path, records: Mapping[str, dict[str, Any]], config: TrainConfig
) -> dict[str, dict[str, dict[str, Any]]]:
    """Write ``comparison.md``, ``comparison.json`` and ``comparison.png`` into ``out``.

    Parameters
    ----------
    out : Path
        The comparison folder.
    records : mapping
        The records of :func:`finish_runs` (every objective and seed).
    config : TrainConfig
        The shared configuration.

    Returns
    -------
    dict
        The :func:`summarise` of each objective, by objective.
    """
    grouped = group_by_objective(records)
    seeds = sorted({seed for by_seed in grouped.values() for seed in by_seed})
    summary = {name: summarise(list(by_seed.values())) for name, by_seed in grouped.items()}
    write_json(
        out / "comparison.json",
        {
            **compare_record(list(grouped), seeds, config),
            "summary": summary,
            "metrics": {
                name: {f"seed{seed}": rec["metrics"] for seed, rec in by_seed.items()}
                for name, by_seed in grouped.items()
            },
        },
    )
    text = comparison_markdown(summary, config, seeds, left_out=_left_out(records))
    atomic_write_text(out / "comparison.md", text)
    plot_comparison(
        summary,
        out / "comparison.png",
        title=f"objectives on {config.dataset}, {config.epochs} epochs: mean ± sd over "
        f"seeds {', '.join(map(str, seeds))}",
    )
    return summary


def _per_factor(records: Sequence[dict[str, Any]]) -> str:
    gaps = [rec["metrics"].get("mig_per_factor") or {} for rec in records]
    names = list(gaps[0])
    return ", ".join(f"{k} {statistics.fmean(g.get(k, math.nan) for g in gaps):.2f}" for k in names)


def print_summary(title: str, records: dict[str, dict[str, Any]], elapsed: float) -> None:
    """Print the summary table of single runs ``records`` (by label) on stdout."""
    print(title)
    print(SUMMARY_HEADER)
    for name, rec in records.items():
        print(summary_line(name, rec["metrics"]))
    for name, rec in records.items():
        print(f"  MIG per factor, {name}: {_per_factor([rec])}")
    print(f"wall time {elapsed:.1f} s")


def print_comparison(title: str, records: Mapping[str, dict[str, Any]], elapsed: float) -> None:
    """Print mean ± sd over seeds of the main metrics, one row per objective."""
    keys = [("elbo", ".2f"), ("tc", ".2f"), ("mig", ".3f"), ("mig_histogram", ".3f")]
    keys.append(("active_units", ".1f"))
    print(title)
    header = f"{'':<8} {'n':>2} " + " ".join(
        f"{h:>16}" for h in ("ELBO", "TC", "MIG", "MIG-h", "AU")
    )
    print(header)
    grouped = group_by_objective(records)
    for name, by_seed in grouped.items():
        stats = summarise(list(by_seed.values()))
        cells = " ".join(f"{_cell(stats.get(k), fmt):>16}" for k, fmt in keys)
        print(f"{name:<8} {len(by_seed):>2} {cells}")
    for name, by_seed in grouped.items():
        print(f"  MIG per factor (mean over seeds), {name}: {_per_factor(list(by_seed.values()))}")
    print(f"wall time {elapsed:.1f} s")
