"""The files of a run folder: atomic writes, the checkpoint and the history CSV.

Every file is written to a temporary sibling and moved into place with
:func:`os.replace`, so a run killed at any moment (``kill -9`` included) leaves
either the old or the new file, never half of one.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from .objectives import TERMS

__all__ = [
    "CHECKPOINT",
    "CONFIG",
    "HISTORY",
    "atomic_write_bytes",
    "atomic_write_text",
    "history_csv",
    "load_checkpoint",
    "saved_epoch",
    "write_json",
]

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.json"
HISTORY = "history.csv"


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never half.

    Parameters
    ----------
    path : Path
        Destination; its folder must exist.
    data : bytes
        The whole new content.
    """
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
    """Write ``text`` (UTF-8) to ``path`` atomically, as :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON (one final newline) to ``path`` atomically."""
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def history_csv(history: list[dict[str, float]]) -> str:
    """The per-epoch history as CSV text: ``epoch``, ``seconds`` and every logged term.

    Parameters
    ----------
    history : list of dict
        One row per epoch, with the keys ``epoch``, ``seconds`` and those of ``TERMS``.

    Returns
    -------
    str
        A header line and one line per epoch (numbers to 6 significant digits).
    """
    buffer = io.StringIO()
    columns = ["epoch", "seconds", *TERMS]
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: (f"{row[k]:.6g}" if k != "epoch" else row[k]) for k in columns})
    return buffer.getvalue()


def load_checkpoint(run_dir: Path) -> dict[str, Any]:
    """The saved state of ``run_dir``.

    Parameters
    ----------
    run_dir : Path
        A run folder.

    Returns
    -------
    dict
        ``config``, ``epoch``, ``model``, ``optimizer``, ``rng`` and ``history``.

    Raises
    ------
    FileNotFoundError
        When ``run_dir`` holds no checkpoint.
    """
    return torch.load(Path(run_dir) / CHECKPOINT, map_location="cpu", weights_only=True)


def saved_epoch(run_dir: Path) -> int:
    """Number of finished epochs saved in ``run_dir`` (0 when it holds no checkpoint)."""
    if not (Path(run_dir) / CHECKPOINT).exists():
        return 0
    return int(load_checkpoint(run_dir)["epoch"])
