"""Figure for the worked example on the math page: KL to the prior N(0.5, 0.1^2).

Writes ``docs/_generated/prior_kl.png``. Run from the repository root::

    python docs/scripts/prior_kl.py
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import vaemath  # noqa: E402

OUT = ROOT / "docs" / "_generated"
PRIOR_MU = 0.5
PRIOR_LOGVAR = math.log(0.1**2)


def main(out_dir: Path = OUT) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    mu = np.linspace(0.2, 0.8, 301)
    logvar = np.linspace(PRIOR_LOGVAR - 4.0, PRIOR_LOGVAR + 3.0, 301)
    grid_mu, grid_logvar = np.meshgrid(mu, logvar)
    kl = vaemath.gaussian_kl(grid_mu, grid_logvar, PRIOR_MU, PRIOR_LOGVAR)

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 4.2), constrained_layout=True)
    levels = 10.0 ** np.arange(-3.0, 1.01, 0.5)
    cs = ax0.contourf(
        grid_mu, grid_logvar, kl, levels=levels, norm="log", cmap="viridis", extend="max"
    )
    ax0.contour(grid_mu, grid_logvar, kl, levels=levels, colors="white", linewidths=0.4)
    ax0.plot(
        PRIOR_MU,
        PRIOR_LOGVAR,
        marker="*",
        color="red",
        markersize=14,
        ls="none",
        label=r"minimum: $\mu = 0.5$, $v = \log 0.01$",
    )
    ax0.set_xlabel(r"$\mu$")
    ax0.set_ylabel(r"$v = \log\sigma^2$")
    ax0.set_title(r"$\mathrm{KL}(\mathcal{N}(\mu, e^{v})\,\|\,\mathcal{N}(0.5, 0.1^2))$")
    ax0.legend(loc="upper right", fontsize=9)
    fig.colorbar(cs, ax=ax0, label="KL (nats), log scale", ticks=levels[::2])

    # Slices through the minimum, against the quadratic approximation
    # 50 (mu - 0.5)^2 + (v - log 0.01)^2 / 4 from the Hessian diag(100, 1/2).
    offset = np.linspace(-1.0, 1.0, 201)
    kl_mu = vaemath.gaussian_kl(
        PRIOR_MU + 0.1 * offset, np.full_like(offset, PRIOR_LOGVAR), PRIOR_MU, PRIOR_LOGVAR
    )
    kl_v = vaemath.gaussian_kl(
        np.full_like(offset, PRIOR_MU), PRIOR_LOGVAR + 2.0 * offset, PRIOR_MU, PRIOR_LOGVAR
    )
    ax1.plot(offset, kl_mu, color="C0", label=r"along $\mu = 0.5 + 0.1\,t$")
    ax1.plot(
        offset, 50 * (0.1 * offset) ** 2, color="C0", ls=":", label=r"$50(\mu-0.5)^2$ (exact here)"
    )
    ax1.plot(offset, kl_v, color="C1", label=r"along $v = \log 0.01 + 2t$")
    ax1.plot(
        offset, (2.0 * offset) ** 2 / 4, color="C1", ls=":", label=r"$\frac{1}{4}(v-\log 0.01)^2$"
    )
    ax1.axvline(0.0, color="red", lw=0.8)
    ax1.set_xlabel(r"$t$ (step from the minimum)")
    ax1.set_ylabel("KL (nats)")
    ax1.set_title("slices through the minimum")
    ax1.legend(fontsize=9)
    target = out_dir / "prior_kl.png"
    fig.savefig(target, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return target


if __name__ == "__main__":
    print(main())
