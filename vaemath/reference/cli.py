"""Command line: ``python -m vaemath.reference [train|compare|evaluate] ...``.

With no arguments it runs the main demo, ``compare --out runs/demo --resume``:
every objective on the seeds 0, 1 and 2 (fixed in code) with the default data
and budget. It writes into ``runs/demo`` relative to the current working
directory: ``runs/demo/<objective>/seed<k>/`` per run and ``comparison.md``,
``comparison.png`` and ``comparison.json`` (mean ± sd over the seeds). Run the
same command again to continue an interrupted demo (finished runs are not
retrained, only re-evaluated); delete ``runs/demo`` to start afresh.

Exit codes: 0 done, 2 bad arguments or the ``demo`` extra not installed (one
line on stderr, nothing written or overwritten), 130 interrupted by Ctrl-C
(finished epochs are saved; the command to continue is printed), 1 anything
unexpected.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from ._extra import extra_module, missing_message, missing_module

try:  # the demo extra; without it main() names the missing module in one line
    import torch

    from .data import Dataset, load_dataset
    from .files import CHECKPOINT, CONFIG, write_json
    from .objectives import OBJECTIVES
    from .report import (
        LabelledProgress,
        TrainedRun,
        finish_runs,
        load_run,
        print_comparison,
        print_summary,
        write_comparison,
    )
    from .runs import (
        COMPARE_FILE,
        CONFIG_OPTIONS,
        DEFAULT_SEEDS,
        UsageError,
        check_writable,
        compare_record,
        config_default,
        config_from_args,
        plan_compare,
        plan_run,
        read_comparison,
        run_folder,
    )
    from .training import Interrupted, remaining_batches, train
except ModuleNotFoundError as exc:
    if extra_module(exc) is None:
        raise

__all__ = ["main"]

PROG = "python -m vaemath.reference"
DEMO_ARGS = ("compare", "--out", "runs/demo", "--resume")
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _shown(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _add_common(parser: argparse.ArgumentParser, *, out: str, seeds: bool) -> None:
    saved = "the objectives and seeds" if seeds else "the objective"
    for flag, (name, kind, text) in CONFIG_OPTIONS.items():
        if flag == "--seed" and seeds:
            continue
        parser.add_argument(
            flag, type=kind, default=None, help=f"{text} (default {_shown(config_default(name))})"
        )
    parser.add_argument(
        "--out", type=Path, default=None, help=f"output folder (default {out}, relative to cwd)"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run(s) in --out: every option left out is taken from the saved "
        f"run ({saved} included), options given must equal the saved ones except "
        "--epochs, which may grow; starts afresh if --out holds no run yet",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help=f"torch CPU threads (default {DEFAULT_THREADS}: min(2, CPUs); the matrices are "
        "small, and more threads slow down on a busy CPU)",
    )
    parser.add_argument(
        "--device",
        default="cpu",
        help="torch device to train on, e.g. cuda (default cpu; evaluation and figures "
        "run on the CPU)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _demo_text() -> str:
    return f"""\
With no arguments: the demo, `{" ".join(DEMO_ARGS)}`:
every objective on the seeds {_seeds()}, written into runs/demo relative to the
current working directory: runs/demo/<objective>/seed<k>/ per run, and
runs/demo/comparison.md, comparison.png, comparison.json (mean ± sd over seeds).
Run `{PROG}` again to continue an interrupted demo (finished
runs are not retrained, only re-evaluated); delete runs/demo to start afresh."""


def _seeds() -> str:
    return ",".join(map(str, DEFAULT_SEEDS))


def build_parser() -> argparse.ArgumentParser:
    """The parser of the three subcommands (errors raise :class:`UsageError`)."""
    raw = argparse.RawDescriptionHelpFormatter
    parser = _Parser(
        prog=PROG,
        description="Reference VAEs trained with vaemath.",
        epilog=_demo_text(),
        formatter_class=raw,
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p_train = sub.add_parser(
        "train", help="train one objective", description="Train one objective."
    )
    p_train.add_argument(
        "--objective",
        default=None,
        help=f"one of {', '.join(OBJECTIVES)} (default {config_default('objective')}; "
        "with --resume, the saved one)",
    )
    _add_common(p_train, out="runs/<objective>", seeds=False)
    p_compare = sub.add_parser(
        "compare",
        help="train every objective on several seeds under the same budget",
        description="Train every objective on every seed, then compare (mean ± sd).",
        epilog=_demo_text(),
        formatter_class=raw,
    )
    p_compare.add_argument(
        "--objectives",
        default=None,
        help=f"comma-separated subset of {','.join(OBJECTIVES)} (default all; with "
        "--resume, the saved ones)",
    )
    p_compare.add_argument(
        "--seeds",
        default=None,
        help=f"comma-separated seeds, each run on every objective (default {_seeds()}; "
        "with --resume, the saved ones)",
    )
    _add_common(p_compare, out="runs/compare", seeds=True)
    p_eval = sub.add_parser(
        "evaluate",
        help="re-evaluate a saved run (or compare) folder",
        description="Re-evaluate a saved run, or every run of a comparison, and rewrite "
        "its metrics.json, figures and comparison files.",
    )
    p_eval.add_argument(
        "run_dir",
        type=Path,
        help=f"a run folder (holding {CHECKPOINT}) or a comparison folder (holding {COMPARE_FILE})",
    )
    p_eval.add_argument(
        "--threads", type=int, default=None, help=f"torch CPU threads (default {DEFAULT_THREADS})"
    )
    p_eval.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


# -- commands -----------------------------------------------------------------------------


DEFAULT_THREADS = min(2, os.cpu_count() or 1)
"""Two threads halve an epoch on a quiet 2-core machine; more gain little at this size."""


def check_device(name: str) -> None:
    """A torch device that exists here, or a one-line usage error."""
    try:
        device = torch.device(name)
    except RuntimeError:
        msg = f"--device: unknown torch device {name!r}"
        raise UsageError(msg) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        msg = "--device cuda: no CUDA device is available here (the default is cpu)"
        raise UsageError(msg)


def cmd_train(args: argparse.Namespace) -> int:
    """``train``: train one objective in ``--out``, evaluate it and print the summary."""
    config, given = config_from_args(args)
    run_dir = args.out or Path("runs") / config.objective
    config = plan_run(run_dir, config, given, args.resume)
    check_writable(run_dir)
    write_json(run_dir / CONFIG, config.to_dict())
    started = time.perf_counter()
    model, history, data = train(
        config, run_dir, resume=args.resume, progress=not args.quiet, device=args.device
    )
    runs = {config.objective: TrainedRun(model, history, data, config, run_dir)}
    records = finish_runs(runs, progress=not args.quiet)
    print_summary(f"{PROG} train -> {run_dir}", records, time.perf_counter() - started)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """``compare``: every objective on every seed under one budget (one bar), then compare."""
    plan = plan_compare(args)
    check_writable(plan.out)
    started = time.perf_counter()
    write_json(plan.out / COMPARE_FILE, compare_record(plan.objectives, plan.seeds, plan.base))
    for run in plan.runs:
        run.run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run.run_dir / CONFIG, run.config.to_dict())
    data = load_dataset(plan.base.dataset)
    total = sum(
        remaining_batches(r.config, r.run_dir, len(data), resume=args.resume) for r in plan.runs
    )
    trained = {}
    bar = LabelledProgress(total, desc="train", enabled=not args.quiet, unit="batch")
    with bar:
        for i, run in enumerate(plan.runs, 1):
            bar.label = f"run {i}/{len(plan.runs)} seed {run.config.seed}"
            model, history, _ = train(
                run.config, run.run_dir, resume=args.resume, progress=bar, dataset=data,
                device=args.device,
            )  # fmt: skip
            trained[run.label] = TrainedRun(model, history, data, run.config, run.run_dir)
    records = finish_runs(trained, progress=not args.quiet)
    write_comparison(plan.out, records, plan.base)
    print_comparison(f"{PROG} compare -> {plan.out}", records, time.perf_counter() - started)
    print(f"table: {plan.out / 'comparison.md'}   chart: {plan.out / 'comparison.png'}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """``evaluate``: re-evaluate a saved run, or every run of a saved comparison."""
    run_dir: Path = args.run_dir
    started = time.perf_counter()
    saved = read_comparison(run_dir / COMPARE_FILE)
    datasets: dict[str, Dataset] = {}
    if saved is not None:
        objectives, seeds, base = saved
        folders = {
            f"{name}/seed{seed}": run_folder(run_dir, name, seed)
            for name in objectives
            for seed in seeds
        }
        found = {k: v for k, v in folders.items() if (v / CHECKPOINT).exists()}
        if not found:
            msg = f"{str(run_dir)!r} holds no finished runs"
            raise UsageError(msg)
        runs = {label: load_run(folder, datasets) for label, folder in found.items()}
        records = finish_runs(runs, progress=not args.quiet)
        write_comparison(run_dir, records, base)
        print_comparison(f"{PROG} evaluate {run_dir}", records, time.perf_counter() - started)
    else:
        run = load_run(run_dir, datasets)
        records = finish_runs({run.config.objective: run}, progress=not args.quiet)
        print_summary(f"{PROG} evaluate {run_dir}", records, time.perf_counter() - started)
    return 0


def continue_command(argv: Sequence[str], command: str | None) -> str:
    """The command line that continues an interrupted ``argv`` (``--resume`` added)."""
    words = list(argv)
    if command != "evaluate" and words and "--resume" not in words:
        words.append("--resume")
    return shlex.join([*PROG.split(), *words])


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
    typed = list(sys.argv[1:] if argv is None else argv)
    command = None
    try:
        args = build_parser().parse_args(typed or list(DEMO_ARGS))
        command = args.command
        threads = args.threads if args.threads is not None else DEFAULT_THREADS
        if threads < 1:
            msg = f"--threads must be >= 1, got {threads}"
            raise UsageError(msg)
        torch.set_num_threads(threads)
        check_device(getattr(args, "device", "cpu"))
        commands = {"train": cmd_train, "compare": cmd_compare, "evaluate": cmd_evaluate}
        return commands[command](args)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (Interrupted, KeyboardInterrupt) as exc:
        again = continue_command(typed, command)
        if command == "evaluate":
            what, verb = "finished files are kept", "evaluate again"
        elif isinstance(exc, Interrupted):
            what = f"{exc.epoch} finished epoch(s) of the current run are saved"
            if command == "compare":
                what = f"every finished run and {what}"
            verb = "continue"
        else:  # Ctrl-C outside the training loop (evaluation, figures)
            what, verb = "every finished epoch is saved", "continue"
        print(f"\n{PROG}: interrupted; {what}. To {verb}, run:\n  {again}", file=sys.stderr)
        return EXIT_INTERRUPTED
