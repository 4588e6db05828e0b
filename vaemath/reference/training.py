"""Training loop with atomic per-epoch checkpoints, exact resume and clean Ctrl-C."""

from __future__ import annotations

import dataclasses
import io
import json
import math
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import torch

from vaemath._lib._progress import Progress

from .data import Dataset, load_dataset
from .files import (
    CHECKPOINT,
    CONFIG,
    HISTORY,
    atomic_write_bytes,
    atomic_write_text,
    history_csv,
    load_checkpoint,
    saved_epoch,
)
from .model import VAE
from .objectives import TERMS, Weights, loss_terms
from .priors import Prior

_PRIOR = Prior()

__all__ = ["Interrupted", "TrainConfig", "build_model", "remaining_batches", "train"]


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a run. Two runs with equal configs train identically.

    The defaults fit the demo's ``dsprites-small`` (4,608 64x64 images) on a CPU:
    ``latent_dim=10`` as in the dSprites papers, an MLP of two 256-unit layers each
    way (4096-256-256-20 / 10-256-256-4096, 2.2 M weights), 20 epochs of 72
    minibatches; one epoch takes about 0.8 s on 2 CPU threads, a run about 16 s.
    The prior is ``prior`` (:class:`~vaemath.reference.priors.Prior`): the Gaussian
    ``N(prior_mu, prior_scale^2 I)`` by default. A saved config without the prior
    keys (written before they existed) loads as that Gaussian.
    """

    objective: str = "elbo"
    dataset: str = "dsprites-small"
    epochs: int = 20
    seed: int = 0
    batch_size: int = 64
    lr: float = 2e-3
    latent_dim: int = 10
    hidden: int = 256
    prior_mu: float = _PRIOR.mu
    prior_scale: float = _PRIOR.scale
    method: str = "mws"
    prior: str = _PRIOR.kind
    prior_low: float = _PRIOR.low
    prior_high: float = _PRIOR.high
    prior_components: int = _PRIOR.components
    prior_offset: float = _PRIOR.offset
    weights: Weights = field(default_factory=Weights)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        values = dict(data)
        values["weights"] = Weights(**values.get("weights", {}))
        return cls(**values)


class Interrupted(Exception):
    """Raised when SIGINT stopped training; the last finished epoch is saved."""

    def __init__(self, epoch: int) -> None:
        super().__init__(f"interrupted after epoch {epoch}")
        self.epoch = epoch


def build_model(config: TrainConfig, dataset: Dataset) -> VAE:
    """A fresh (untrained) model of the shape ``config`` asks for on ``dataset``."""
    return VAE(dataset.image_shape, config.latent_dim, config.hidden)


def remaining_batches(config: TrainConfig, run_dir: Path, n: int, *, resume: bool) -> int:
    """Minibatches :func:`train` still has to run in ``run_dir`` (the size of its bar).

    Parameters
    ----------
    config : TrainConfig
        The run to train.
    run_dir : Path
        Its folder (with ``resume``, the epochs saved there are already done).
    n : int
        Number of training images.
    resume : bool
        As passed to :func:`train`.
    """
    done = saved_epoch(run_dir) if resume else 0
    return max(config.epochs - done, 0) * math.ceil(n / config.batch_size)


# -- Ctrl-C --------------------------------------------------------------------------


@contextmanager
def _sigint_flag() -> Iterator[dict[str, bool]]:
    """Turn SIGINT into a flag checked between batches (only in the main thread)."""
    flag = {"stop": False}

    def handler(signum: int, frame: FrameType | None) -> None:
        flag["stop"] = True

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread
        yield flag
        return
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


# -- the loop --------------------------------------------------------------------------


def _epoch_order(config: TrainConfig, epoch: int, n: int) -> torch.Tensor:
    """The data order of ``epoch``: a function of (seed, epoch) only, so resume replays it."""
    generator = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator)


def train(
    config: TrainConfig,
    run_dir: Path,
    *,
    resume: bool = False,
    progress: bool | Progress = True,
    dataset: Dataset | None = None,
    after_epoch: Callable[[int], None] | None = None,
    device: str = "cpu",
) -> tuple[VAE, list[dict[str, float]], Dataset]:
    """Train (or continue) the run in ``run_dir`` up to ``config.epochs`` epochs.

    After every epoch the model, optimizer, history and torch RNG state are
    written atomically to ``run_dir / checkpoint.pt`` (and ``history.csv``), so a
    run killed at any moment resumes from its last finished epoch and then
    continues exactly as the uninterrupted run would have. SIGINT stops at the
    next batch boundary and raises :class:`Interrupted`.

    Parameters
    ----------
    config : TrainConfig
        The run.
    run_dir : Path
        Its folder (created if needed).
    resume : bool
        Continue from the checkpoint in ``run_dir`` if there is one.
    progress : bool or Progress
        ``True``: one progress bar on stderr over every remaining minibatch;
        ``False``: none; a :class:`~vaemath._lib._progress.Progress`: advance that
        (shared) bar by one step per minibatch and leave it open.
    dataset : Dataset, optional
        The training data (default: ``load_dataset(config.dataset)``).
    after_epoch : callable, optional
        Called with the number of finished epochs after each checkpoint.
    device : str
        Torch device to train on (``"cuda"`` for the full grid); the returned
        model is on the CPU, where evaluation and figures run. Runs are
        deterministic per seed on one device; a GPU run differs from a CPU one.

    Returns
    -------
    model : VAE
    history : list of dict
        One row per finished epoch (resumed epochs included).
    dataset : Dataset
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    data = load_dataset(config.dataset) if dataset is None else dataset
    n = len(data)
    if isinstance(progress, Progress):
        return _train(
            config, run_dir, data, progress, resume=resume, after_epoch=after_epoch, device=device
        )
    total = remaining_batches(config, run_dir, n, resume=resume)
    with Progress(total, desc=f"train {config.objective}", enabled=progress, unit="batch") as bar:
        return _train(
            config, run_dir, data, bar, resume=resume, after_epoch=after_epoch, device=device
        )


def _train(
    config: TrainConfig,
    run_dir: Path,
    data: Dataset,
    bar: Progress,
    *,
    resume: bool,
    after_epoch: Callable[[int], None] | None,
    device: str = "cpu",
) -> tuple[VAE, list[dict[str, float]], Dataset]:
    torch.manual_seed(config.seed)
    dev = torch.device(device)
    model = build_model(config, data).to(dev)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    history: list[dict[str, float]] = []
    start_epoch = 0
    if resume and (run_dir / CHECKPOINT).exists():
        state = load_checkpoint(run_dir)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        history = list(state["history"])
        start_epoch = int(state["epoch"])
    else:
        atomic_write_text(run_dir / CONFIG, json.dumps(config.to_dict(), indent=2) + "\n")

    n = len(data)
    batches = math.ceil(n / config.batch_size)
    prior = Prior.of(config)
    with _sigint_flag() as flag:
        for epoch in range(start_epoch, config.epochs):
            model.train()
            started = time.perf_counter()
            sums = dict.fromkeys(TERMS, 0.0)
            order = _epoch_order(config, epoch, n).numpy()
            where = f"{config.objective} epoch {epoch + 1}/{config.epochs}"
            for b in range(batches):
                if flag["stop"]:
                    raise Interrupted(epoch)
                # By batch: the full dSprites grid is lazy (rendered on first use).
                x = torch.from_numpy(
                    data.batch(order[b * config.batch_size : (b + 1) * config.batch_size])
                ).to(dev)
                mu, logvar = model.encode(x)
                z = VAE.sample(mu, logvar)
                terms = loss_terms(
                    config.objective,
                    x,
                    logits=model.decode(z),
                    z=z,
                    mu=mu,
                    logvar=logvar,
                    prior=prior,
                    weights=config.weights,
                    dataset_size=n,
                    method=config.method,
                )
                optimizer.zero_grad(set_to_none=True)
                terms["loss"].backward()
                optimizer.step()
                weight = x.shape[0] / n
                for key in TERMS:
                    sums[key] += float(terms[key].detach()) * weight
                bar.update(1, f"{where} loss={float(terms['loss'].detach()):.1f}")
            row = {"epoch": epoch + 1, "seconds": time.perf_counter() - started, **sums}
            history.append(row)
            state = {
                "config": config.to_dict(),
                "epoch": epoch + 1,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "rng": torch.get_rng_state(),
                "history": history,
            }
            buffer = io.BytesIO()
            torch.save(state, buffer)
            atomic_write_bytes(run_dir / CHECKPOINT, buffer.getvalue())
            atomic_write_text(run_dir / HISTORY, history_csv(history))
            if after_epoch is not None:
                after_epoch(epoch + 1)
            if flag["stop"]:
                raise Interrupted(epoch + 1)
    return model.cpu(), history, data
