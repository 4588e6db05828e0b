"""Command line: ``python -m vaemath.reference [train|compare|evaluate] ...``.

With no arguments it runs the main demo: ``compare --out runs/demo --resume``
(all four objectives on the built-in shapes data with the default budget).

Exit codes: 0 done, 2 bad arguments or the ``demo`` extra not installed (one
line on stderr, nothing written or overwritten), 130 interrupted by Ctrl-C
(finished epochs are saved; continue with ``--resume``), 1 anything unexpected.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from ._extra import extra_module, missing_message, missing_module

try:  # the demo extra; without it main() names the missing module in one line
    import torch

    from vaemath._lib._progress import Progress

    from .data import load_dataset
    from .files import CHECKPOINT, atomic_write_text, load_checkpoint
    from .objectives import OBJECTIVES
    from .report import TrainedRun, finish_runs, print_summary, write_comparison
    from .runs import (
        CONFIG_OPTIONS,
        UsageError,
        check_writable,
        config_from_args,
        parse_objectives,
        plan_run,
        saved_config,
    )
    from .training import Interrupted, TrainConfig, build_model, remaining_batches, train
except ModuleNotFoundError as exc:
    if extra_module(exc) is None:
        raise

__all__ = ["main"]

PROG = "python -m vaemath.reference"
DEMO_ARGS = ("compare", "--out", "runs/demo", "--resume")
COMPARE_FILE = "compare.json"
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _add_common(parser: argparse.ArgumentParser) -> None:
    for flag, (_, kind, text) in CONFIG_OPTIONS.items():
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
    """The parser of the three subcommands (errors raise :class:`UsageError`)."""
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


# -- commands -----------------------------------------------------------------------------


def cmd_train(args: argparse.Namespace) -> int:
    """``train``: train one objective in ``--out``, evaluate it and print the summary."""
    config, given = config_from_args(args, args.objective or "elbo")
    run_dir = args.out or Path("runs") / config.objective
    config = plan_run(run_dir, config, given, args.resume)
    check_writable(run_dir)
    started = time.perf_counter()
    model, history, data = train(config, run_dir, resume=args.resume, progress=not args.quiet)
    runs = {config.objective: TrainedRun(model, history, data, config, run_dir)}
    records = finish_runs(runs, progress=not args.quiet)
    print_summary(f"{PROG} train -> {run_dir}", records, time.perf_counter() - started)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """``compare``: train every objective under one budget (one progress bar), then compare."""
    objectives = parse_objectives(args.objectives)
    if getattr(args, "objective", None) is not None:
        msg = "compare takes --objectives, not --objective"
        raise UsageError(msg)
    out = args.out or Path("runs") / "compare"
    base, given = config_from_args(args, objectives[0])
    plans = {}
    for name in objectives:
        config = dataclasses.replace(base, objective=name)
        plans[name] = plan_run(out / name, config, {**given, "objective": name}, args.resume)
    if (out / COMPARE_FILE).exists() and not args.resume:
        msg = f"{str(out)!r} already holds a comparison; pass --resume or choose another --out"
        raise UsageError(msg)
    check_writable(out)
    started = time.perf_counter()
    atomic_write_text(out / COMPARE_FILE, json.dumps(base.to_dict(), indent=2) + "\n")
    data = load_dataset(base.dataset)
    total = sum(
        remaining_batches(c, out / n, len(data), resume=args.resume) for n, c in plans.items()
    )
    runs = {}
    with Progress(total, desc="train", enabled=not args.quiet, unit="batch") as bar:
        for name, config in plans.items():
            model, history, _ = train(
                config, out / name, resume=args.resume, progress=bar, dataset=data
            )
            runs[name] = TrainedRun(model, history, data, config, out / name)
    records = finish_runs(runs, progress=not args.quiet)
    write_comparison(out, records, base)
    print_summary(f"{PROG} compare -> {out}", records, time.perf_counter() - started)
    print(f"table: {out / 'comparison.md'}   chart: {out / 'comparison.png'}")
    return 0


def _load_run(run_dir: Path) -> TrainedRun:
    try:
        state = load_checkpoint(run_dir)
    except FileNotFoundError:
        msg = f"{str(run_dir)!r} holds no {CHECKPOINT}"
        raise UsageError(msg) from None
    config = TrainConfig.from_dict(state["config"])
    data = load_dataset(config.dataset)
    model = build_model(config, data)
    model.load_state_dict(state["model"])
    return TrainedRun(model, list(state["history"]), data, config, run_dir)


def cmd_evaluate(args: argparse.Namespace) -> int:
    """``evaluate``: re-evaluate a saved run, or every run of a saved comparison."""
    run_dir: Path = args.run_dir
    started = time.perf_counter()
    base = saved_config(run_dir / COMPARE_FILE)
    if base is not None:
        names = [n for n in OBJECTIVES if (run_dir / n / CHECKPOINT).exists()]
        if not names:
            msg = f"{str(run_dir)!r} holds no finished runs"
            raise UsageError(msg)
        records = finish_runs({n: _load_run(run_dir / n) for n in names}, progress=not args.quiet)
        write_comparison(run_dir, records, base)
    else:
        run = _load_run(run_dir)
        records = finish_runs({run.config.objective: run}, progress=not args.quiet)
    print_summary(f"{PROG} evaluate {run_dir}", records, time.perf_counter() - started)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments (default ``sys.argv[1:]``); none at all runs the demo.

    Returns
    -------
    int
        The exit code (see the module docstring).
    """
    missing = missing_module()
    if missing is not None:
        print(missing_message(missing), file=sys.stderr)
        return EXIT_USAGE
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
