"""Run folders: options to configs, validation, saved configs and resume planning.

Everything here only reads: a bad argument or an incompatible resume raises
:class:`UsageError` before anything is written or overwritten.

A comparison folder (``compare --out OUT``) holds ``OUT/compare.json`` (the
objectives, the seeds and the shared config) and one run folder per objective
and seed, ``OUT/<objective>/seed<k>`` (see :func:`run_folder`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

from vaemath._estimators import METHODS

from .data import DATASETS
from .files import CONFIG, saved_epoch
from .objectives import OBJECTIVES, Weights
from .priors import PRIORS, Prior, prior_problem
from .training import TrainConfig

__all__ = [
    "COMPARE_FILE",
    "CONFIG_OPTIONS",
    "DEFAULT_SEEDS",
    "ComparePlan",
    "RunPlan",
    "UsageError",
    "check_writable",
    "compare_record",
    "config_default",
    "config_from_args",
    "parse_objectives",
    "parse_seeds",
    "plan_compare",
    "plan_run",
    "read_comparison",
    "run_folder",
    "saved_config",
    "validate",
]

COMPARE_FILE = "compare.json"
# The seeds of every comparison unless --seeds says otherwise: fixed here, before
# any result is seen, so that no seed is picked for looking good.
DEFAULT_SEEDS = (0, 1, 2)


class UsageError(Exception):
    """A bad argument: reported as one line on stderr, exit code 2."""


# option name -> (TrainConfig / Weights field, type, help); the default is appended
# from TrainConfig() by config_default, so the help cannot drift from the code.
CONFIG_OPTIONS: dict[str, tuple[str, type, str]] = {
    "--dataset": ("dataset", str, f"built-in dataset: {', '.join(DATASETS)}"),
    "--epochs": ("epochs", int, "training epochs"),
    "--seed": ("seed", int, "seed of initialisation, data order and sampling"),
    "--batch-size": ("batch_size", int, "minibatch size"),
    "--lr": ("lr", float, "Adam learning rate"),
    "--latent-dim": ("latent_dim", int, "number of latent units D"),
    "--hidden": ("hidden", int, "hidden layer width"),
    "--prior": ("prior", str, f"prior p(z): {', '.join(PRIORS)} (docs/reference_vae.rst)"),
    "--prior-mu": ("prior_mu", float, "prior mean m of p(z) = N(m, s^2 I) (mixture: centre)"),
    "--prior-scale": ("prior_scale", float, "prior sd s > 0 (mixture: of each component)"),
    "--prior-low": ("prior_low", float, "uniform prior: lower edge of the box [low, high]^D"),
    "--prior-high": ("prior_high", float, "uniform prior: upper edge of the box"),
    "--prior-components": ("prior_components", int, "mixture prior: K <= 2D components"),
    "--prior-offset": ("prior_offset", float, "mixture prior: means at m +- a e_j, a > 0"),
    "--method": ("method", str, f"beta-TCVAE minibatch estimator: {' or '.join(METHODS)}"),
    "--beta": ("weights.beta", float, "beta-VAE: weight of the KL"),
    "--mi-weight": ("weights.tc_alpha", float, "beta-TCVAE alpha: weight of I(x;z)"),
    "--tc-weight": ("weights.tc_beta", float, "beta-TCVAE beta: weight of the TC"),
    "--dimkl-weight": (
        "weights.tc_gamma",
        float,
        "beta-TCVAE gamma: weight of the dimension-wise KL",
    ),
    "--info-alpha": ("weights.info_alpha", float, "InfoVAE alpha in [0, 1]"),
    "--info-lambda": ("weights.info_lambda", float, "InfoVAE lambda"),
    "--bandwidth": (
        "weights.bandwidth",
        float,
        "RBF length scale of the MMD; 0 = sqrt(D) * the prior's sd per unit",
    ),
}
_FLAGS = {name: flag for flag, (name, _, _) in CONFIG_OPTIONS.items()}
_FLAGS["objective"] = "--objective"


class RunPlan(NamedTuple):
    """One run to train: its config and folder (``label`` names it in bars and tables)."""

    label: str
    config: TrainConfig
    run_dir: Path


class ComparePlan(NamedTuple):
    """A comparison: every objective on every seed under one shared config."""

    out: Path
    objectives: list[str]
    seeds: list[int]
    base: TrainConfig
    runs: list[RunPlan]


# -- configuration ----------------------------------------------------------------------


def config_default(name: str) -> Any:
    """The default of config field ``name`` (dotted for the weights, ``weights.beta``)."""
    return _flat(TrainConfig())[name]


def _given(args: argparse.Namespace) -> dict[str, Any]:
    """Config fields given explicitly on the command line (dotted names for weights)."""
    out = {}
    for flag, (name, _, _) in CONFIG_OPTIONS.items():
        value = getattr(args, flag[2:].replace("-", "_"), None)
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


def validate(config: TrainConfig, *, objective: bool = True) -> None:
    """Check every setting of ``config``.

    Parameters
    ----------
    config : TrainConfig
        The configuration to check.
    objective : bool
        Also check that ``config.objective`` can train against the prior (off for
        the shared config of a comparison, checked per objective instead).

    Raises
    ------
    UsageError
        Naming the first bad setting (by its command-line flag).
    """
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
        (config.seed >= 0, f"--seed must be >= 0, got {config.seed}"),
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
    for field in dataclasses.fields(Weights):
        value = getattr(config.weights, field.name)
        flag = _FLAGS[f"weights.{field.name}"]
        checks.append((math.isfinite(value) and value >= 0, f"{flag} must be >= 0, got {value}"))
    alpha, lam = config.weights.info_alpha, config.weights.info_lambda
    checks.append((alpha <= 1, f"--info-alpha must be in [0, 1], got {alpha}"))
    for ok, message in checks:
        if not ok:
            raise UsageError(message)
    if alpha + lam - 1 < 0:
        msg = f"InfoVAE needs alpha + lambda >= 1 (MMD weight >= 0), got {alpha} + {lam}"
        raise UsageError(msg)
    name = config.objective if objective else None
    problem = prior_problem(Prior.of(config), name, alpha, config.latent_dim)
    if problem is not None:
        raise UsageError(problem)


def config_from_args(args: argparse.Namespace) -> tuple[TrainConfig, dict[str, Any]]:
    """The validated config of the command line, and the fields given explicitly.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed ``train`` or ``compare`` arguments.

    Returns
    -------
    config : TrainConfig
        The defaults overridden by the options given (for a new run).
    given : dict
        Only the options given on the command line (dotted names for the weights):
        with ``--resume`` these override the saved run, the rest is taken from it.
    """
    given = _given(args)
    config = _apply(TrainConfig(), given)
    validate(config, objective=hasattr(args, "objective"))
    return config, given


def parse_objectives(text: str | None) -> list[str] | None:
    """The objectives of ``--objectives a,b`` (``None`` when not given)."""
    if text is None:
        return None
    names = [t.strip() for t in text.split(",") if t.strip()]
    for name in names:
        if name not in OBJECTIVES:
            msg = f"unknown objective {name!r} (choose from {', '.join(OBJECTIVES)})"
            raise UsageError(msg)
    if not names:
        msg = "--objectives is empty"
        raise UsageError(msg)
    return list(dict.fromkeys(names))


def parse_seeds(text: str | None) -> list[int] | None:
    """The seeds of ``--seeds 0,1,2`` (``None`` when not given)."""
    if text is None:
        return None
    seeds = []
    for part in (t.strip() for t in text.split(",")):
        if not part:
            continue
        try:
            seed = int(part)
        except ValueError:
            seed = -1
        if seed < 0:
            msg = f"--seeds takes comma-separated integers >= 0, got {part!r}"
            raise UsageError(msg)
        seeds.append(seed)
    if not seeds:
        msg = "--seeds is empty"
        raise UsageError(msg)
    return list(dict.fromkeys(seeds))


# -- run folders --------------------------------------------------------------------------


def run_folder(out: Path, objective: str, seed: int) -> Path:
    """The folder of one run of a comparison: ``out / objective / f"seed{seed}"``."""
    return Path(out) / objective / f"seed{seed}"


def check_writable(folder: Path) -> None:
    """Create ``folder`` if needed and prove it is writable, or raise UsageError."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        msg = f"output folder {str(folder)!r} is not writable: {exc.strerror or exc}"
        raise UsageError(msg) from None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        msg = f"cannot read {path}: {exc}"
        raise UsageError(msg) from None
    except ValueError as exc:
        msg = f"{path} is not valid JSON: {exc}"
        raise UsageError(msg) from None


def saved_config(path: Path) -> TrainConfig | None:
    """The config saved in the JSON file ``path`` (a run's ``config.json``).

    Parameters
    ----------
    path : Path
        The file.

    Returns
    -------
    TrainConfig or None
        ``None`` when there is no such file.

    Raises
    ------
    UsageError
        When the file cannot be read or holds no vaemath.reference config.
    """
    if not path.exists():
        return None
    data = _read_json(path)
    try:
        return TrainConfig.from_dict(data)
    except (ValueError, TypeError) as exc:
        msg = f"{path} is not a vaemath.reference config: {exc}"
        raise UsageError(msg) from None


def compare_record(objectives: list[str], seeds: list[int], base: TrainConfig) -> dict[str, Any]:
    """The content of ``compare.json``: objectives, seeds, run folders and shared config."""
    shared = base.to_dict()
    del shared["objective"], shared["seed"]
    return {
        "objectives": list(objectives),
        "seeds": list(seeds),
        "runs": [f"{name}/seed{seed}" for name in objectives for seed in seeds],
        "config": shared,
    }


def read_comparison(path: Path) -> tuple[list[str], list[int], TrainConfig] | None:
    """The objectives, seeds and shared config of a ``compare.json`` (``None`` if absent).

    Raises
    ------
    UsageError
        When the file cannot be read, or was written by an older version (one
        seed, no seed folders).
    """
    if not path.exists():
        return None
    data = _read_json(path)
    if not isinstance(data, dict) or not {"objectives", "seeds", "config"} <= data.keys():
        msg = (
            f"{path} is not a comparison of this version (objectives x seeds in "
            f"<objective>/seed<k> folders); choose another --out or delete {path.parent}"
        )
        raise UsageError(msg)
    try:
        base = TrainConfig.from_dict(data["config"])
        objectives = [str(name) for name in data["objectives"]]
        seeds = [int(seed) for seed in data["seeds"]]
    except (ValueError, TypeError) as exc:
        msg = f"{path} is not a vaemath.reference comparison: {exc}"
        raise UsageError(msg) from None
    return objectives, seeds, base


def _check_resume(where: Path, saved: TrainConfig, given: dict[str, Any]) -> None:
    """Every option given with ``--resume`` (but ``--epochs``) must equal the saved one."""
    saved_flat = _flat(saved)
    for name, value in given.items():
        if name != "epochs" and saved_flat[name] != value:
            flag = _FLAGS.get(name, name)
            msg = (
                f"cannot resume {str(where)!r}: it was trained with {flag} {saved_flat[name]!r}, "
                f"not {value!r} (leave {flag} out to keep the saved value; only --epochs "
                "can change)"
            )
            raise UsageError(msg)


def plan_run(
    run_dir: Path, config: TrainConfig, given: dict[str, Any], resume: bool
) -> TrainConfig:
    """The config to train in ``run_dir``; checks resume compatibility and writes nothing.

    Parameters
    ----------
    run_dir : Path
        The run folder.
    config : TrainConfig
        The config of a new run (defaults overridden by ``given``).
    given : dict
        The options given explicitly (from :func:`config_from_args`).
    resume : bool
        ``--resume``.

    Returns
    -------
    TrainConfig
        ``config`` for a new run; for a resumed one the saved config, with the
        ``--epochs`` given (if any): every option left out is the saved one.

    Raises
    ------
    UsageError
        When ``run_dir`` holds a run and ``resume`` is false, a given option
        differs from the saved one, or ``--epochs`` is below the epochs trained.
    """
    saved = saved_config(run_dir / CONFIG)
    if saved is None:
        if run_dir.exists() and not run_dir.is_dir():
            msg = f"output folder {str(run_dir)!r} is not a directory"
            raise UsageError(msg)
        return config
    if not resume:
        msg = f"{str(run_dir)!r} already holds a run; pass --resume or choose another --out"
        raise UsageError(msg)
    _check_resume(run_dir, saved, given)
    epochs = int(given.get("epochs", saved.epochs))
    done = saved_epoch(run_dir)
    if epochs < done:
        msg = (
            f"cannot resume {str(run_dir)!r} with --epochs {epochs}: it has already "
            f"trained {done} epochs"
        )
        raise UsageError(msg)
    planned = dataclasses.replace(saved, epochs=epochs)
    validate(planned)
    return planned


def plan_compare(args: argparse.Namespace) -> ComparePlan:
    """The runs of ``compare``: every objective on every seed; writes nothing.

    With ``--resume`` on a folder holding a comparison, every option left out is
    taken from its ``compare.json`` (objectives and seeds included); ``--epochs``
    may grow, ``--objectives`` and ``--seeds`` may change the set compared (runs
    already trained are reused), any other option given must equal the saved one.

    Raises
    ------
    UsageError
        On a bad argument or an incompatible resume (see :func:`plan_run`).
    """
    if getattr(args, "seed", None) is not None:
        msg = "compare takes --seeds (comma-separated), not --seed"
        raise UsageError(msg)
    objectives = parse_objectives(args.objectives)
    seeds = parse_seeds(args.seeds)
    out = args.out or Path("runs") / "compare"
    config, given = config_from_args(args)
    saved = read_comparison(out / COMPARE_FILE)
    if saved is None:
        base = config
        objectives = objectives or list(OBJECTIVES)
        seeds = seeds or list(DEFAULT_SEEDS)
    elif not args.resume:
        msg = f"{str(out)!r} already holds a comparison; pass --resume or choose another --out"
        raise UsageError(msg)
    else:
        saved_objectives, saved_seeds, saved_base = saved
        _check_resume(out, saved_base, given)
        base = dataclasses.replace(saved_base, epochs=int(given.get("epochs", saved_base.epochs)))
        objectives = objectives or saved_objectives
        seeds = seeds or saved_seeds
    runs = []
    for name in objectives:
        for seed in seeds:
            run_dir = run_folder(out, name, seed)
            wanted = dataclasses.replace(base, objective=name, seed=seed)
            validate(wanted)
            run_given = {**given, "objective": name, "seed": seed}
            planned = plan_run(run_dir, wanted, run_given, args.resume)
            runs.append(RunPlan(f"{name}/seed{seed}", planned, run_dir))
    return ComparePlan(out, objectives, seeds, base, runs)
