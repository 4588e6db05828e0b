"""Run folders: options to configs, validation, saved configs and resume planning.

Everything here only reads: a bad argument or an incompatible resume raises
:class:`UsageError` before anything is written or overwritten.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import tempfile
from pathlib import Path
from typing import Any

from vaemath._estimators import METHODS

from .data import DATASETS
from .files import CONFIG
from .objectives import OBJECTIVES, Weights
from .training import TrainConfig

__all__ = [
    "CONFIG_OPTIONS",
    "UsageError",
    "check_writable",
    "config_from_args",
    "parse_objectives",
    "plan_run",
    "saved_config",
    "validate",
]


class UsageError(Exception):
    """A bad argument: reported as one line on stderr, exit code 2."""


# option name -> (TrainConfig / Weights field, type, help)
CONFIG_OPTIONS: dict[str, tuple[str, type, str]] = {
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


# -- configuration ----------------------------------------------------------------------


def _given(args: argparse.Namespace) -> dict[str, Any]:
    """Config fields given explicitly on the command line (dotted names for weights)."""
    out = {}
    for flag, (name, _, _) in CONFIG_OPTIONS.items():
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
    """Check every setting of ``config``.

    Parameters
    ----------
    config : TrainConfig
        The configuration to check.

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
    flags = {name: flag for flag, (name, _, _) in CONFIG_OPTIONS.items()}
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


def config_from_args(
    args: argparse.Namespace, objective: str
) -> tuple[TrainConfig, dict[str, Any]]:
    """The validated config of the command line, and the fields given explicitly.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed ``train`` or ``compare`` arguments.
    objective : str
        The objective when ``--objective`` is not given.

    Returns
    -------
    config : TrainConfig
        Defaults overridden by the options given.
    given : dict
        The options given (dotted names for the weights), for :func:`plan_run`.
    """
    given = _given(args)
    given.setdefault("objective", objective)
    config = _apply(TrainConfig(), given)
    validate(config)
    return config, given


def parse_objectives(text: str | None) -> list[str]:
    """The objectives of ``--objectives a,b`` (all of them when ``None``)."""
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


# -- run folders --------------------------------------------------------------------------


def check_writable(folder: Path) -> None:
    """Create ``folder`` if needed and prove it is writable, or raise UsageError."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        msg = f"output folder {str(folder)!r} is not writable: {exc.strerror or exc}"
        raise UsageError(msg) from None


def saved_config(path: Path) -> TrainConfig | None:
    """The config saved in the JSON file ``path`` (``config.json``, ``compare.json``).

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
    try:
        return TrainConfig.from_dict(json.loads(path.read_text()))
    except OSError as exc:
        msg = f"cannot read {path}: {exc}"
        raise UsageError(msg) from None
    except (ValueError, TypeError) as exc:
        msg = f"{path} is not a vaemath.reference config: {exc}"
        raise UsageError(msg) from None


def plan_run(
    run_dir: Path, config: TrainConfig, given: dict[str, Any], resume: bool
) -> TrainConfig:
    """The config to train in ``run_dir``; checks resume compatibility and writes nothing.

    Parameters
    ----------
    run_dir : Path
        The run folder.
    config : TrainConfig
        The config of the command line.
    given : dict
        The options given explicitly (from :func:`config_from_args`).
    resume : bool
        ``--resume``.

    Returns
    -------
    TrainConfig
        ``config`` for a new run; for a resumed one the saved config, with the
        ``--epochs`` given (if any).

    Raises
    ------
    UsageError
        When ``run_dir`` holds a run and ``resume`` is false, or a given option
        differs from the saved one.
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
