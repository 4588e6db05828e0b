"""Training loop with atomic per-epoch checkpoints, exact resume and clean Ctrl-C."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import torch

from .data import Dataset, load_dataset
from .model import VAE
from .objectives import TERMS, Weights, loss_terms
from .progress import ProgressBar

__all__ = [
    "CHECKPOINT",
    "Interrupted",
    "TrainConfig",
    "atomic_write_bytes",
    "atomic_write_text",
    "build_model",
    "load_checkpoint",
    "train",
]

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.json"
HISTORY = "history.csv"


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a run. Two runs with equal configs train identically."""

    objective: str = "elbo"
    dataset: str = "shapes"
    epochs: int = 80
    seed: int = 0
    batch_size: int = 64
    lr: float = 2e-3
    latent_dim: int = 8
    hidden: int = 256
    prior_mu: float = 0.0
    prior_scale: float = 1.0
    method: str = "mws"
    weights: Weights = field(default_factory=Weights)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        values = dict(data)
        values["weights"] = Weights(**values.get("weights", {}))
        return cls(**values)

    def identity(self) -> dict[str, Any]:
        """The fields a resumed run must share (all but the epoch budget)."""
        values = self.to_dict()
        del values["epochs"]
        return values


class Interrupted(Exception):
    """Raised when SIGINT stopped training; the last finished epoch is saved."""

    def __init__(self, epoch: int) -> None:
        super().__init__(f"interrupted after epoch {epoch}")
        self.epoch = epoch


# -- atomic files ------------------------------------------------------------------


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never half."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def history_csv(history: list[dict[str, float]]) -> str:
    buffer = io.StringIO()
    columns = ["epoch", "seconds", *TERMS]
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: (f"{row[k]:.6g}" if k != "epoch" else row[k]) for k in columns})
    return buffer.getvalue()


def load_checkpoint(run_dir: Path) -> dict[str, Any]:
    """The saved state of ``run_dir`` (raises FileNotFoundError when there is none)."""
    return torch.load(Path(run_dir) / CHECKPOINT, map_location="cpu", weights_only=True)


def build_model(config: TrainConfig, dataset: Dataset) -> VAE:
    return VAE(dataset.image_shape, config.latent_dim, config.hidden)


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
    progress: bool = True,
    dataset: Dataset | None = None,
    after_epoch: Callable[[int], None] | None = None,
) -> tuple[VAE, list[dict[str, float]], Dataset]:
    """Train (or continue) the run in ``run_dir`` up to ``config.epochs`` epochs.

    After every epoch the model, optimizer, history and torch RNG state are
    written atomically to ``run_dir / checkpoint.pt`` (and ``history.csv``), so a
    run killed at any moment resumes from its last finished epoch and then
    continues exactly as the uninterrupted run would have. SIGINT stops at the
    next batch boundary and raises :class:`Interrupted`.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    data = load_dataset(config.dataset) if dataset is None else dataset
    torch.manual_seed(config.seed)
    model = build_model(config, data)
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

    images = torch.from_numpy(data.images)
    n = images.shape[0]
    batches = math.ceil(n / config.batch_size)
    with _sigint_flag() as flag:
        for epoch in range(start_epoch, config.epochs):
            model.train()
            started = time.perf_counter()
            sums = dict.fromkeys(TERMS, 0.0)
            order = _epoch_order(config, epoch, n)
            bar = ProgressBar(
                batches,
                f"{config.objective:>7} epoch {epoch + 1}/{config.epochs}",
                enabled=progress,
            )
            for b in range(batches):
                if flag["stop"]:
                    bar.close()
                    raise Interrupted(epoch)
                x = images[order[b * config.batch_size : (b + 1) * config.batch_size]]
                mu, logvar = model.encode(x)
                z = VAE.sample(mu, logvar)
                terms = loss_terms(
                    config.objective,
                    x,
                    logits=model.decode(z),
                    z=z,
                    mu=mu,
                    logvar=logvar,
                    prior_mu=config.prior_mu,
                    prior_scale=config.prior_scale,
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
                bar.update(1, f"loss={float(terms['loss'].detach()):.1f}")
            bar.close()
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
    return model, history, data
