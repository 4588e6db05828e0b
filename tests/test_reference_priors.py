"""Tests of the reference VAE's other priors: ``--prior uniform`` and ``--prior mixture``.

* The objective's prior terms against independent computations: the uniform MMD²
  against a brute-force RBF Monte Carlo over a large sample of the box, the
  mixture's Monte Carlo KL against ``torch.distributions.MixtureSameFamily``.
* The evaluation of a mixture prior against that of the Gaussian it degenerates
  to, the traversal ranges against the prior's support (scipy's normal CDF).
* The command line: bad prior / objective combinations are one-line usage
  errors; tiny runs with each prior; old run folders without the prior keys
  still resume and evaluate.

Randomized statistical tests: every seed is fixed, so each run is deterministic.
A Monte Carlo comparison allows 5 standard errors, estimated from the same
draws; a correct implementation fails such a check for about one seed in 10^6.
"""

from __future__ import annotations

import json
import math
import runpy
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")

import torch
from scipy.stats import norm
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

from vaemath.reference import main, plots
from vaemath.reference.data import make_digits
from vaemath.reference.files import load_checkpoint
from vaemath.reference.metrics import encode_dataset, evaluate
from vaemath.reference.model import VAE
from vaemath.reference.objectives import Weights, loss_terms
from vaemath.reference.priors import Prior
from vaemath.reference.runs import read_comparison
from vaemath.reference.training import TrainConfig

# Helpers and fixtures of the sibling test modules (pytest imports with
# --import-mode=importlib, so they are not importable by name).
_reference = runpy.run_path(str(Path(__file__).with_name("test_reference.py")))
_cli = runpy.run_path(str(Path(__file__).with_name("test_reference_cli.py")))
TINY = _reference["TINY"]
_batch = _reference["_batch"]
_reference_recon_kl = _reference["_reference_recon_kl"]
_one_thread = _cli["_one_thread"]  # autouse: torch on one thread
figures = _cli["figures"]

UNIFORM_INFOVAE = ["--prior", "uniform", "--objective", "infovae", "--info-alpha", "1"]


def _terms(
    objective: str,
    prior: Prior,
    weights: Weights | None = None,
    *,
    seed: int = 0,
    method: str = "mws",
    batch: tuple | None = None,
):
    """``loss_terms`` on ``batch`` (default ``_batch(seed)``), and the batch."""
    x, logits, z, mu, logvar = batch or _batch(seed)
    terms = loss_terms(
        objective,
        x,
        logits=logits,
        z=z,
        mu=mu,
        logvar=logvar,
        prior=prior,
        weights=weights or Weights(),
        dataset_size=100,
        method=method,
    )
    return terms, (x, logits, z, mu, logvar)


def _rbf(a: np.ndarray, b: np.ndarray, h: float) -> np.ndarray:
    """Brute-force RBF kernel exp(-|a - b|^2 / (2 h^2)) of matched rows (or broadcast)."""
    return np.exp(-((a - b) ** 2).sum(-1) / (2 * h**2))


# -- the uniform prior ---------------------------------------------------------------------


class TestUniformPrior:
    def test_mmd_against_brute_force_monte_carlo(self):
        low, high = -1.0, 2.0
        prior = Prior("uniform", low=low, high=high)
        weights = Weights(info_alpha=1.0, info_lambda=10.0)
        terms, (x, logits, z, mu, logvar) = _terms("infovae", prior, weights)
        zn = z.numpy()
        n, d = zn.shape
        h = math.sqrt(d) * (high - low) / math.sqrt(12.0)  # sqrt(D) x the box's sd
        rng = np.random.default_rng(1)
        m = 200_000
        y, y2 = rng.uniform(low, high, (m, d)), rng.uniform(low, high, (m, d))
        gram = _rbf(zn[:, None, :], zn[None, :, :], h)
        zz = (gram.sum() - np.trace(gram)) / (n * (n - 1))
        cross = np.mean([_rbf(zn[i], y, h) for i in range(n)], axis=0)  # (m,)
        per_draw = -2.0 * cross + _rbf(y, y2, h)
        expected = zz + per_draw.mean()
        error = per_draw.std() / math.sqrt(m)
        assert abs(float(terms["mmd2"]) - expected) < 5 * error
        recon, _ = _reference_recon_kl(x, logits, mu, logvar, m=0.0, s=1.0)
        assert abs(float(terms["loss"]) - (recon + 10.0 * expected)) < 5 * 10.0 * error

    def test_kl_terms_are_infinite_and_mi_tc_do_not_involve_the_prior(self):
        weights = Weights(info_alpha=1.0)
        terms, _ = _terms("infovae", Prior("uniform"), weights)
        assert float(terms["kl"]) == math.inf
        assert float(terms["dimkl"]) == math.inf
        assert float(terms["elbo"]) == -math.inf
        gaussian, _ = _terms("infovae", Prior("gaussian", 0.5, 0.1), weights)
        for key in ("mi", "tc"):
            assert float(terms[key]) == pytest.approx(float(gaussian[key]), rel=1e-12)

    def test_loss_and_gradients_finite(self):
        x, logits, z, mu, logvar = _batch(2)
        mu = mu.clone().requires_grad_(True)
        z = mu + (z - mu).detach()
        batch = (x, logits, z, mu, logvar)
        weights = Weights(info_alpha=1.0)
        terms, _ = _terms("infovae", Prior("uniform"), weights, method="mss", batch=batch)
        terms["loss"].backward()
        assert math.isfinite(float(terms["loss"].detach()))
        assert torch.isfinite(mu.grad).all()
        assert float(mu.grad.abs().sum()) > 0

    def test_nan_posterior_gives_nan_kl(self):
        _, _, z, mu, logvar = _batch()
        mu = mu.clone()
        mu[3, 1] = math.nan
        prior = Prior("uniform")
        kl = prior.kl(z, mu, logvar)
        assert torch.isnan(kl[3])
        assert torch.isinf(kl[torch.arange(16) != 3]).all()
        assert torch.isnan(prior.kl_per_unit(z, mu, logvar)[3, 1])

    @pytest.mark.parametrize(
        ("objective", "weights", "message"),
        [
            pytest.param("elbo", Weights(), "cannot train objective 'elbo'", id="elbo"),
            pytest.param("beta", Weights(), "cannot train objective 'beta'", id="beta"),
            pytest.param("betatc", Weights(), "cannot train objective 'betatc'", id="betatc"),
            pytest.param("infovae", Weights(), "needs --info-alpha 1", id="infovae alpha .5"),
        ],
    )
    def test_objectives_without_a_finite_loss_raise(self, objective, weights, message):
        with pytest.raises(ValueError, match=message):
            _terms(objective, Prior("uniform"), weights)


# -- the mixture prior ---------------------------------------------------------------------


MIXTURE = Prior("mixture", mu=0.5, scale=0.7, components=5, offset=1.5)
# The components of MIXTURE in D = 3, written out: m +- a along axes 0, 1, then + on 2.
MIXTURE_MEANS = 0.5 + 1.5 * np.array(
    [[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1]], dtype=np.float64
)


def _mixture_kl(z, mu, logvar) -> float:
    """Batch mean of log q(z|x) - log p(z) by torch.distributions."""
    means = torch.from_numpy(MIXTURE_MEANS)
    components = Independent(Normal(means, torch.full_like(means, 0.7)), 1)
    p = MixtureSameFamily(Categorical(logits=torch.zeros(5, dtype=torch.float64)), components)
    q = Independent(Normal(mu, torch.exp(0.5 * logvar)), 1)
    return float((q.log_prob(z) - p.log_prob(z)).mean())


class TestMixturePrior:
    def test_kl_against_mixture_same_family(self):
        terms, (x, logits, z, mu, logvar) = _terms("elbo", MIXTURE)
        kl = _mixture_kl(z, mu, logvar)
        recon, _ = _reference_recon_kl(x, logits, mu, logvar, m=0.0, s=1.0)
        assert float(terms["kl"]) == pytest.approx(kl, rel=1e-10)
        assert float(terms["loss"]) == pytest.approx(recon + kl, rel=1e-10)

    @pytest.mark.parametrize("method", ["mws", "mss"])
    def test_betatc_unit_weights_telescope(self, method):
        # MI + TC + (dimension-wise KL + prior dependence) = the Monte Carlo KL.
        weights = Weights(tc_alpha=1.0, tc_beta=1.0, tc_gamma=1.0)
        terms, (x, logits, z, mu, logvar) = _terms(
            "betatc", MIXTURE, weights, seed=3, method=method
        )
        recon, _ = _reference_recon_kl(x, logits, mu, logvar, m=0.0, s=1.0)
        assert float(terms["loss"]) == pytest.approx(recon + _mixture_kl(z, mu, logvar), rel=1e-9)

    def test_mmd_averages_to_brute_force(self):
        # Each call draws as many mixture samples as codes: unbiased, so the mean
        # over repeats approaches the MMD² against a large mixture sample.
        _, _, z, _, _ = _batch(4)
        prior = Prior("mixture", mu=0.0, scale=0.7, components=5, offset=1.5)
        torch.manual_seed(0)
        repeats = np.array([float(_terms("infovae", prior, seed=4)[0]["mmd2"]) for _ in range(300)])
        zn = z.numpy()
        n, d = zn.shape
        h = math.sqrt(d) * prior.sd(d)
        rng = np.random.default_rng(2)
        m = 100_000
        means = MIXTURE_MEANS - 0.5
        y = means[rng.integers(0, 5, m)] + 0.7 * rng.standard_normal((m, d))
        y2 = means[rng.integers(0, 5, m)] + 0.7 * rng.standard_normal((m, d))
        gram = _rbf(zn[:, None, :], zn[None, :, :], h)
        zz = (gram.sum() - np.trace(gram)) / (n * (n - 1))
        per_draw = -2.0 * np.mean([_rbf(zn[i], y, h) for i in range(n)], axis=0) + _rbf(y, y2, h)
        expected = zz + per_draw.mean()
        error = math.hypot(repeats.std() / math.sqrt(repeats.size), per_draw.std() / math.sqrt(m))
        assert abs(repeats.mean() - expected) < 5 * error

    def test_sd_and_bandwidth_rule(self):
        # trace(Cov) / D = s^2 + sum_k |mu_k - mean|^2 / (K D) for equal weights.
        centred = MIXTURE_MEANS - MIXTURE_MEANS.mean(0)
        expected = math.sqrt(0.7**2 + (centred**2).sum() / (5 * 3))
        assert MIXTURE.sd(3) == pytest.approx(expected, rel=1e-12)
        assert Prior("uniform", low=-1.0, high=2.0).sd(7) == pytest.approx(3 / math.sqrt(12))
        assert Prior("gaussian", 0.3, 0.4).sd(7) == 0.4

    def test_evaluation_matches_the_gaussian_it_degenerates_to(self):
        # Two components at m +- 1e-9 are N(m, s^2) in float32: the mixture's
        # Monte Carlo KL and dimension-wise KL must match the Gaussian's closed
        # form / decomposition within their Monte Carlo error; MI and TC exactly.
        data = make_digits()
        torch.manual_seed(0)
        model = VAE(data.image_shape, 3, 16)
        m, s = 0.3, 0.8
        mixture = Prior("mixture", mu=m, scale=s, components=2, offset=1e-9)
        got = evaluate(model, data, prior=mixture, seed=0, progress=False)
        ref = evaluate(model, data, prior_mu=m, prior_scale=s, seed=0, progress=False)
        assert got["mi"] == pytest.approx(ref["mi"], rel=1e-6)
        assert got["tc"] == pytest.approx(ref["tc"], rel=1e-6, abs=1e-9)
        # Standard errors from independent draws of the same size.
        mu, logvar = (t.double() for t in encode_dataset(model, torch.from_numpy(data.images)))
        z = VAE.sample(mu, logvar)
        log_q = Normal(mu, torch.exp(0.5 * logvar)).log_prob(z).sum(1)
        log_p = Normal(m, s).log_prob(z).sum(1)
        closed = (0.5 * (torch.exp(logvar) / s**2 + (mu - m) ** 2 / s**2 - 1 - logvar)).sum(1)
        closed = closed + mu.shape[1] * math.log(s)
        n = mu.shape[0]
        kl_error = float((log_q - log_p - closed).std()) / math.sqrt(n)
        assert abs(got["kl"] - ref["kl"]) < 5 * kl_error
        assert got["elbo"] == pytest.approx(-(got["recon"] + got["kl"]), rel=1e-6)
        shift = Normal(0.0, 1.0).log_prob(z).sum(1) - log_p
        dimkl_error = math.sqrt(2) * float(shift.std()) / math.sqrt(n)
        assert abs(got["dimkl"] - ref["dimkl"]) < 5 * dimkl_error
        assert "mmd2_sampled" not in got
        assert got["kl_per_unit"] == pytest.approx(ref["kl_per_unit"], abs=5 * kl_error)


# -- traversals ----------------------------------------------------------------------------


class TestTraversalRange:
    TAIL = norm.cdf(-2.5)

    def test_gaussian_unchanged(self):
        values = Prior("gaussian", 0.5, 0.2).traversal_values(4, 9)
        np.testing.assert_allclose(values, 0.5 + 0.2 * np.linspace(-2.5, 2.5, 9), rtol=0)

    def test_uniform_spans_the_box(self):
        values = Prior("uniform", low=-2.0, high=3.0).traversal_values(4, 9)
        assert values[0] == -2.0
        assert values[-1] == 3.0
        assert np.all(np.diff(values) > 0)

    def test_mixture_spans_the_quantiles_of_the_widest_marginal(self):
        prior = Prior("mixture", mu=0.2, scale=0.5, components=3, offset=2.0)
        values = prior.traversal_values(4, 9)
        # Marginals by scipy: dim 0 holds +-2 and 0 (the component on axis 1), dims
        # 1..3 the rest; the range is the union of each marginal's central 98.8%.
        means = 0.2 + 2.0 * np.array([[1, 0, 0, 0], [-1, 0, 0, 0], [0, 1, 0, 0]])

        def cdf(t):
            return norm.cdf((t - means) / 0.5).mean(0)  # (D,)

        # The ends are the outermost quantiles: no marginal has more mass beyond them.
        assert cdf(values[0]).max() == pytest.approx(self.TAIL, abs=1e-9)
        assert cdf(values[-1]).min() == pytest.approx(1 - self.TAIL, abs=1e-9)
        assert np.argmax(cdf(values[0])) == 0  # the widest marginal sets the range

    def test_figure_ticks_span_the_box(self, figures, tmp_path):
        data = make_digits()
        torch.manual_seed(0)
        model = VAE(data.image_shape, 3, 16)
        plots.plot_traversals(
            model,
            data,
            tmp_path / "t.png",
            kl_per_unit=[0.1, 0.3, 0.2],
            prior=Prior("uniform", low=-2.0, high=3.0),
            score_name="Var[mu]",
        )
        (fig,) = figures
        (ax,) = fig.axes
        ticks = [t.get_text() for t in ax.get_xticklabels()]
        assert ticks[0] == "-2"
        assert ticks[-1] == "3"
        assert "box [-2, 3]" in ax.get_xlabel()
        assert ax.texts[0].get_text() == "z1  Var[mu] 0.30"


# -- the command line ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["train", "--prior", "uniform"], "cannot train objective 'elbo'", id="elbo"),
        pytest.param(
            ["train", "--prior", "uniform", "--objective", "betatc", "--info-alpha", "1"],
            "cannot train objective 'betatc'",
            id="betatc",
        ),
        pytest.param(
            ["train", "--prior", "uniform", "--objective", "infovae"],
            "needs --info-alpha 1",
            id="infovae alpha .5",
        ),
        pytest.param(
            ["compare", "--prior", "uniform", "--info-alpha", "1"],
            "cannot train objective 'elbo'",
            id="compare every objective",
        ),
        pytest.param(
            [*UNIFORM_INFOVAE, "--prior-low", "1", "--prior-high", "1"],
            "--prior-low must be < --prior-high",
            id="empty box",
        ),
        pytest.param(
            [*UNIFORM_INFOVAE, "--prior-scale", "2"],
            "do not apply to --prior uniform",
            id="uniform with a scale",
        ),
        pytest.param(["--prior-low", "-2"], "apply only to --prior uniform", id="low, gaussian"),
        pytest.param(
            ["--prior-components", "3"], "apply only to --prior mixture", id="K, gaussian"
        ),
        pytest.param(
            ["--prior", "mixture", "--latent-dim", "2", "--prior-components", "5"],
            "must be in 1..2D = 1..4",
            id="too many components",
        ),
        pytest.param(
            ["--prior", "mixture", "--prior-offset", "0"],
            "--prior-offset must be > 0",
            id="zero offset",
        ),
        pytest.param(["--prior", "cauchy"], "unknown prior 'cauchy'", id="unknown prior"),
    ],
)
def test_bad_prior_arguments_exit_2(args, message, tmp_path, capsys):
    out = tmp_path / "run"
    words = args if args[0] in {"train", "compare"} else ["train", *args]
    assert main([*words, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("python -m vaemath.reference: error:")
    assert message in err
    assert not out.exists()


def _json(path: Path):
    return json.loads(path.read_text())


class TestTinyRuns:
    def test_uniform_compare(self, tmp_path, capsys):
        out = tmp_path / "uniform"
        args = ["compare", "--objectives", "infovae", "--seeds", "0,1", *TINY, "--epochs", "1"]
        args += ["--prior", "uniform", "--prior-low", "-2", "--prior-high", "2"]
        assert main([*args, "--info-alpha", "1", "--out", str(out), "--quiet"]) == 0
        assert read_comparison(out / "compare.json")[2].prior == "uniform"
        for seed in (0, 1):
            run = out / "infovae" / f"seed{seed}"
            config = _json(run / "config.json")
            assert (config["prior"], config["prior_low"], config["prior_high"]) == (
                "uniform",
                -2.0,
                2.0,
            )
            history = load_checkpoint(run)["history"]
            assert all(math.isfinite(row["loss"]) for row in history)
            assert all(math.isfinite(row["mmd2"]) for row in history)
            metrics = _json(run / "metrics.json")["metrics"]
            assert metrics["kl"] == math.inf
            assert metrics["elbo"] == -math.inf
            assert metrics["dimkl"] == math.inf
            for key in ("recon", "mi", "tc", "mmd2", "mmd2_sampled"):
                assert math.isfinite(metrics[key]), key
            assert len(metrics["mu_variance_per_unit"]) == 4
            assert (run / "traversals.png").stat().st_size > 1000
        table = (out / "comparison.md").read_text()
        assert "prior U[-2, 2]^D" in table
        assert "| infovae | 2 | -inf |" in table  # ELBO: -inf, no sd

    def test_mixture_train_resume_evaluate(self, tmp_path, capsys):
        out = tmp_path / "mixture"
        args = ["train", "--objective", "betatc", "--prior", "mixture", *TINY, "--quiet"]
        args += ["--prior-components", "4", "--prior-offset", "1.5", "--out", str(out)]
        assert main([*args, "--epochs", "1"]) == 0
        assert main(["train", "--out", str(out), "--resume", "--epochs", "2", "--quiet"]) == 0
        config = _json(out / "config.json")
        assert config["prior"] == "mixture"
        assert config["prior_components"] == 4
        assert config["epochs"] == 2
        history = load_checkpoint(out)["history"]
        assert len(history) == 2
        for row in history:
            assert all(math.isfinite(row[k]) for k in ("loss", "kl", "mi", "tc", "dimkl"))
        metrics = _json(out / "metrics.json")["metrics"]
        assert math.isfinite(metrics["kl"])
        assert metrics["elbo"] == pytest.approx(-(metrics["recon"] + metrics["kl"]))
        assert math.isfinite(metrics["mmd2"])
        assert "mmd2_sampled" not in metrics
        assert main(["evaluate", str(out), "--quiet"]) == 0
        again = _json(out / "metrics.json")["metrics"]
        assert again["kl"] == metrics["kl"]
        assert again["mmd2"] == metrics["mmd2"]
        capsys.readouterr()
        resume = ["train", "--out", str(out), "--resume", "--prior", "gaussian", "--quiet"]
        assert main(resume) == 2
        assert "trained with --prior 'mixture'" in capsys.readouterr().err


class TestOldRunFolders:
    def test_config_without_prior_keys_resumes_and_evaluates(self, tmp_path, capsys):
        out = tmp_path / "old"
        assert main(["train", *TINY, "--epochs", "1", "--out", str(out), "--quiet"]) == 0
        new_keys = ("prior", "prior_low", "prior_high", "prior_components", "prior_offset")
        config = _json(out / "config.json")
        old = {k: v for k, v in config.items() if k not in new_keys}
        assert len(old) == len(config) - len(new_keys)
        (out / "config.json").write_text(json.dumps(old, indent=2) + "\n")
        state = load_checkpoint(out)
        state["config"] = {k: v for k, v in state["config"].items() if k not in new_keys}
        torch.save(state, out / "checkpoint.pt")
        assert TrainConfig.from_dict(old) == TrainConfig.from_dict(config)
        assert TrainConfig.from_dict(old).prior == "gaussian"
        assert main(["evaluate", str(out), "--quiet"]) == 0
        assert main(["train", "--out", str(out), "--resume", "--epochs", "2", "--quiet"]) == 0
        assert load_checkpoint(out)["epoch"] == 2
        assert _json(out / "config.json")["prior"] == "gaussian"

    def test_comparison_without_prior_keys(self, tmp_path):
        shared = {k: v for k, v in TrainConfig().to_dict().items() if not k.startswith("prior")}
        shared = {**shared, "prior_mu": 0.5, "prior_scale": 0.1}
        del shared["objective"], shared["seed"]
        path = tmp_path / "compare.json"
        path.write_text(json.dumps({"objectives": ["elbo"], "seeds": [0], "config": shared}))
        _, _, base = read_comparison(path)
        assert (base.prior, base.prior_mu, base.prior_scale) == ("gaussian", 0.5, 0.1)
