"""Command line: ``python -m vaemath.reference [train|compare|evaluate] ...``.

With no arguments it runs the main demo: ``compare --out runs/demo --resume``
(all four objectives on the built-in shapes data with the default budget).

Exit codes: 0 done, 2 bad arguments (one line on stderr, nothing written or
overwritten), 130 interrupted by Ctrl-C (finished epochs are saved; continue
with ``--resume``), 1 anything unexpected.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import torch

from .data import DATASETS, Dataset, load_dataset
from .metrics import evaluate
from .model import VAE
from .objectives import METHODS, OBJECTIVES, Weights, rbf_bandwidth
from .plots import plot_comparison, plot_curves, plot_reconstructions, plot_traversals
from .training import (
    CHECKPOINT,
    CONFIG,
    Interrupted,
    TrainConfig,
    atomic_write_text,
    build_model,
    load_checkpoint,
    train,
)

__all__ = ["main"]

PROG = "python -m vaemath.reference"
DEMO_ARGS = ("compare", "--out", "runs/demo", "--resume")
COMPARE_FILE = "compare.json"
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A bad argument: reported as one line on stderr, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


# option name -> (TrainConfig / Weights field, type, help)
_CONFIG_OPTIONS: dict[str, tuple[str, type, str]] = {
    "--dataset": ("dataset", str, f"built-in dataset: {', '.join(DATASETS)} (default shapes)"),
    "--epochs": ("epochs", int, "training epochs (default 80)"),
    "--seed": ("seed", int, "seed of initialisation, data order and sampling (default 0)"),
    "--batch-size": ("batch_size", int, "minibatch size (default 64)"),
    "--lr": ("lr", float, "Adam learning rate (default 2e-3)"),
    "--latent-dim": ("latent_dim", int, "number of latent units D (default 8)"),
    "--hidden": ("hidden", int, "hidden layer width (default 256)"),
    "--prior-mu": ("prior_mu", float, "prior mean m of p(z) = N(m, s^2 I) (default 0)"),
    "--prior-scale": ("prior_scale", float, "prior standard deviation s > 0 (default 1)"),
    "--method": ("method", str, "beta-TCVAE minibatch estimator: mws or mss (default mws)"),
    "--beta": ("weights.beta", float, "beta-VAE: weight of the KL (default 4)"),
    "--mi-weight": ("weights.tc_alpha", float, "beta-TCVAE alpha: weight of I(x;z) (default 1)"),
    "--tc-weight": ("weights.tc_beta", float, "beta-TCVAE beta: weight of the TC (default 6)"),
    "--dimkl-weight": (
        "weights.tc_gamma",
        float,
        "beta-TCVAE gamma: weight of the dimension-wise KL (default 1)",
    ),
    "--info-alpha": ("weights.info_alpha", float, "InfoVAE alpha in [0, 1] (default 0.5)"),
    "--info-lambda": ("weights.info_lambda", float, "InfoVAE lambda (default 1000)"),
    "--bandwidth": (
        "weights.bandwidth",
        float,
        "RBF length scale of the MMD; 0 = sqrt(D) * prior scale (default 0)",
    ),
}


def _add_common(parser: argparse.ArgumentParser) -> None:
    for flag, (_, kind, text) in _CONFIG_OPTIONS.items():
        parser.add_argument(flag, type=kind, default=None, help=text)
    parser.add_argument("--out", type=Path, default=None, help="run folder")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out (options given must match the saved ones; "
        "--epochs may grow); starts afresh if --out holds no run yet",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default 1: the matrices are small, and more threads "
        "slow down badly on a busy CPU)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Reference VAEs trained with vaemath. No arguments: run the demo "
        f"({' '.join(DEMO_ARGS)}).",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p_train = sub.add_parser("train", help="train one objective")
    p_train.add_argument("--objective", default=None, help=f"one of {', '.join(OBJECTIVES)}")
    _add_common(p_train)
    p_compare = sub.add_parser("compare", help="train every objective under the same budget")
    p_compare.add_argument(
        "--objectives",
        default=None,
        help=f"comma-separated subset of {','.join(OBJECTIVES)} (default all)",
    )
    _add_common(p_compare)
    p_eval = sub.add_parser("evaluate", help="re-evaluate a saved run (or compare) folder")
    p_eval.add_argument("run_dir", type=Path)
    p_eval.add_argument("--threads", type=int, default=None)
    p_eval.add_argument("--quiet", action="store_true")
    return parser


# -- configuration ----------------------------------------------------------------------


def _given(args: argparse.Namespace) -> dict[str, Any]:
    """Config fields given explicitly on the command line (dotted names for weights)."""
    out = {}
    for flag, (name, _, _) in _CONFIG_OPTIONS.items():
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None:
            out[name] = value
    if getattr(args, "objective", None) is not None:
        out["objective"] = args.objective
    return out


def _apply(config: TrainConfig, values: dict[str, Any]) -> TrainConfig:
    weights = {k[8:]: v for k, v in values.items() if k.startswith("weights.")}
    top = {k: v for k, v in values.items() if not k.startswith("weights.")}
    return dataclasses.replace(
        config, weights=dataclasses.replace(config.weights, **weights), **top
    )


def _flat(config: TrainConfig) -> dict[str, Any]:
    data = config.to_dict()
    weights = data.pop("weights")
    data.update({f"weights.{k}": v for k, v in weights.items()})
    return data


def validate(config: TrainConfig) -> None:
    """Raise UsageError naming the first bad setting."""
    checks = [
        (
            config.objective in OBJECTIVES,
            f"unknown objective {config.objective!r} (choose from {', '.join(OBJECTIVES)})",
        ),
        (
            config.dataset in DATASETS,
            f"unknown dataset {config.dataset!r} (choose from {', '.join(DATASETS)})",
        ),
        (
            config.method in METHODS,
            f"unknown method {config.method!r} (choose from {', '.join(METHODS)})",
        ),
        (config.epochs >= 1, f"--epochs must be >= 1, got {config.epochs}"),
        (config.batch_size >= 2, f"--batch-size must be >= 2, got {config.batch_size}"),
        (config.latent_dim >= 1, f"--latent-dim must be >= 1, got {config.latent_dim}"),
        (config.hidden >= 1, f"--hidden must be >= 1, got {config.hidden}"),
        (math.isfinite(config.lr) and config.lr > 0, f"--lr must be > 0, got {config.lr}"),
        (math.isfinite(config.prior_mu), f"--prior-mu must be finite, got {config.prior_mu}"),
        (
            math.isfinite(config.prior_scale) and config.prior_scale > 0,
            f"--prior-scale must be > 0, got {config.prior_scale}",
        ),
    ]
    flags = {name: flag for flag, (name, _, _) in _CONFIG_OPTIONS.items()}
    for field in dataclasses.fields(Weights):
        value = getattr(config.weights, field.name)
        flag = flags[f"weights.{field.name}"]
        checks.append((math.isfinite(value) and value >= 0, f"{flag} must be >= 0, got {value}"))
    alpha, lam = config.weights.info_alpha, config.weights.info_lambda
    checks.append((alpha <= 1, f"--info-alpha must be in [0, 1], got {alpha}"))
    for ok, message in checks:
        if not ok:
            raise UsageError(message)
    if alpha + lam - 1 < 0:
        msg = f"InfoVAE needs alpha + lambda >= 1 (MMD weight >= 0), got {alpha} + {lam}"
        raise UsageError(msg)


def _check_writable(folder: Path) -> None:
    """Create ``folder`` if needed and prove it is writable, or raise UsageError."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        msg = f"output folder {str(folder)!r} is not writable: {exc.strerror or exc}"
        raise UsageError(msg) from None


def _saved_config(run_dir: Path) -> TrainConfig | None:
    path = run_dir / CONFIG
    if not path.exists():
        return None
    try:
        return TrainConfig.from_dict(json.loads(path.read_text()))
    except (ValueError, TypeError) as exc:
        msg = f"{path} is not a vaemath.reference config: {exc}"
        raise UsageError(msg) from None


def plan_run(
    run_dir: Path, config: TrainConfig, given: dict[str, Any], resume: bool
) -> TrainConfig:
    """The config to train in ``run_dir``: checks resume compatibility; writes nothing."""
    saved = _saved_config(run_dir)
    if saved is None:
        if run_dir.exists() and not run_dir.is_dir():
            msg = f"output folder {str(run_dir)!r} is not a directory"
            raise UsageError(msg)
        return config
    if not resume:
        msg = f"{str(run_dir)!r} already holds a run; pass --resume or choose another --out"
        raise UsageError(msg)
    saved_flat = _flat(saved)
    for name, value in given.items():
        if name != "epochs" and saved_flat[name] != value:
            msg = (
                f"cannot resume {str(run_dir)!r}: it was trained with {name}="
                f"{saved_flat[name]!r}, not {value!r}"
            )
            raise UsageError(msg)
    if config.objective != saved.objective:
        msg = (
            f"cannot resume {str(run_dir)!r}: it was trained with objective="
            f"{saved.objective!r}, not {config.objective!r}"
        )
        raise UsageError(msg)
    return dataclasses.replace(saved, epochs=given.get("epochs", saved.epochs))


# -- running ----------------------------------------------------------------------------


def _finish(
    model: VAE,
    history: list[dict[str, float]],
    data: Dataset,
    config: TrainConfig,
    run_dir: Path,
    *,
    progress: bool,
) -> dict[str, Any]:
    """Evaluate, then write metrics.json and the figures of one run."""
    metrics = evaluate(
        model,
        data,
        prior_mu=config.prior_mu,
        prior_scale=config.prior_scale,
        seed=config.seed,
        bandwidth=rbf_bandwidth(config.weights, config.latent_dim, config.prior_scale),
        progress=progress,
    )
    record = {
        "objective": config.objective,
        "config": config.to_dict(),
        "epochs_trained": len(history),
        "train_seconds": float(sum(row["seconds"] for row in history)),
        "metrics": metrics,
        "environment": {
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "python": platform.python_version(),
        },
    }
    atomic_write_text(run_dir / "metrics.json", json.dumps(record, indent=2) + "\n")
    plot_reconstructions(model, data, run_dir / "reconstructions.png")
    plot_traversals(
        model,
        data,
        run_dir / "traversals.png",
        kl_per_unit=metrics["kl_per_unit"],
        prior_mu=config.prior_mu,
        prior_scale=config.prior_scale,
    )
    plot_curves(history, run_dir / "curves.png", title=f"{config.objective} on {config.dataset}")
    return record


def _summary_line(name: str, m: dict[str, Any]) -> str:
    return (
        f"{name:<8} {m['elbo']:>9.2f} {m['recon']:>8.2f} {m['kl']:>7.2f} {m['mi']:>6.2f} "
        f"{m['tc']:>6.2f} {m['dimkl']:>6.2f} {m['active_units']:>3d} {m['mig']:>6.3f}"
    )


SUMMARY_HEADER = (
    f"{'':<8} {'ELBO':>9} {'recon':>8} {'KL':>7} {'MI':>6} {'TC':>6} {'dimKL':>6} "
    f"{'AU':>3} {'MIG':>6}"
)


def comparison_markdown(records: dict[str, dict[str, Any]], config: TrainConfig) -> str:
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


def _print_summary(title: str, records: dict[str, dict[str, Any]], elapsed: float) -> None:
    print(title)
    print(SUMMARY_HEADER)
    for name, rec in records.items():
        print(_summary_line(name, rec["metrics"]))
    per_factor = {n: rec["metrics"]["mig_per_factor"] for n, rec in records.items()}
    for name, gaps in per_factor.items():
        text = ", ".join(f"{k} {v:.2f}" for k, v in gaps.items())
        print(f"  MIG per factor, {name}: {text}")
    print(f"wall time {elapsed:.1f} s")


def _config_from_args(args: argparse.Namespace, objective: str) -> tuple[TrainConfig, dict]:
    given = _given(args)
    given.setdefault("objective", objective)
    config = _apply(TrainConfig(), given)
    validate(config)
    return config, given


def cmd_train(args: argparse.Namespace) -> int:
    config, given = _config_from_args(args, args.objective or "elbo")
    run_dir = args.out or Path("runs") / config.objective
    config = plan_run(run_dir, config, given, args.resume)
    _check_writable(run_dir)
    started = time.perf_counter()
    model, history, data = train(config, run_dir, resume=args.resume, progress=not args.quiet)
    record = _finish(model, history, data, config, run_dir, progress=not args.quiet)
    _print_summary(
        f"{PROG} train -> {run_dir}", {config.objective: record}, time.perf_counter() - started
    )
    return 0


def _parse_objectives(text: str | None) -> list[str]:
    if text is None:
        return list(OBJECTIVES)
    names = [t.strip() for t in text.split(",") if t.strip()]
    for name in names:
        if name not in OBJECTIVES:
            msg = f"unknown objective {name!r} (choose from {', '.join(OBJECTIVES)})"
            raise UsageError(msg)
    if not names:
        msg = "--objectives is empty"
        raise UsageError(msg)
    return names


def _write_comparison(out: Path, records: dict[str, dict[str, Any]], config: TrainConfig) -> None:
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


def cmd_compare(args: argparse.Namespace) -> int:
    objectives = _parse_objectives(args.objectives)
    if getattr(args, "objective", None) is not None:
        msg = "compare takes --objectives, not --objective"
        raise UsageError(msg)
    out = args.out or Path("runs") / "compare"
    base, given = _config_from_args(args, objectives[0])
    plans = {}
    for name in objectives:
        config = dataclasses.replace(base, objective=name)
        plans[name] = plan_run(out / name, config, {**given, "objective": name}, args.resume)
    if (out / COMPARE_FILE).exists() and not args.resume:
        msg = f"{str(out)!r} already holds a comparison; pass --resume or choose another --out"
        raise UsageError(msg)
    _check_writable(out)
    started = time.perf_counter()
    atomic_write_text(out / COMPARE_FILE, json.dumps(base.to_dict(), indent=2) + "\n")
    records = {}
    data = load_dataset(base.dataset)
    for name, config in plans.items():
        model, history, _ = train(
            config, out / name, resume=args.resume, progress=not args.quiet, dataset=data
        )
        records[name] = _finish(model, history, data, config, out / name, progress=not args.quiet)
    _write_comparison(out, records, base)
    _print_summary(f"{PROG} compare -> {out}", records, time.perf_counter() - started)
    print(f"table: {out / 'comparison.md'}   chart: {out / 'comparison.png'}")
    return 0


def _evaluate_run(run_dir: Path, *, progress: bool) -> dict[str, Any]:
    try:
        state = load_checkpoint(run_dir)
    except FileNotFoundError:
        msg = f"{str(run_dir)!r} holds no {CHECKPOINT}"
        raise UsageError(msg) from None
    config = TrainConfig.from_dict(state["config"])
    data = load_dataset(config.dataset)
    model = build_model(config, data)
    model.load_state_dict(state["model"])
    return _finish(model, list(state["history"]), data, config, run_dir, progress=progress)


def cmd_evaluate(args: argparse.Namespace) -> int:
    run_dir: Path = args.run_dir
    started = time.perf_counter()
    if (run_dir / COMPARE_FILE).exists():
        base = _saved_config_file(run_dir / COMPARE_FILE)
        names = [n for n in OBJECTIVES if (run_dir / n / CHECKPOINT).exists()]
        if not names:
            msg = f"{str(run_dir)!r} holds no finished runs"
            raise UsageError(msg)
        records = {n: _evaluate_run(run_dir / n, progress=not args.quiet) for n in names}
        _write_comparison(run_dir, records, base)
    else:
        record = _evaluate_run(run_dir, progress=not args.quiet)
        records = {record["objective"]: record}
    _print_summary(f"{PROG} evaluate {run_dir}", records, time.perf_counter() - started)
    return 0


def _saved_config_file(path: Path) -> TrainConfig:
    try:
        return TrainConfig.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError) as exc:
        msg = f"cannot read {path}: {exc}"
        raise UsageError(msg) from None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        argv = list(DEMO_ARGS)
    try:
        args = build_parser().parse_args(argv)
        threads = args.threads if args.threads is not None else 1
        if threads < 1:
            msg = f"--threads must be >= 1, got {threads}"
            raise UsageError(msg)
        torch.set_num_threads(threads)
        command = {"train": cmd_train, "compare": cmd_compare, "evaluate": cmd_evaluate}
        return command[args.command](args)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Interrupted as exc:
        print(
            f"\n{PROG}: interrupted; {exc.epoch} finished epoch(s) are saved, "
            "continue with --resume",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:  # Ctrl-C outside the training loop (evaluation, figures)
        print(
            f"\n{PROG}: interrupted; finished epochs are saved, continue with --resume",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
