"""Frictions met when dropping vaemath into existing VAE training code (one test each)."""

from __future__ import annotations

import numpy as np
import pytest

import vaemath


def _batch(b=8, d=3, seed=0):
    rng = np.random.default_rng(seed)
    mu = rng.standard_normal((b, d))
    return mu + 0.5 * rng.standard_normal((b, d)), mu, rng.uniform(-1, 0, (b, d))


class TestDatasetSizeAsFloat:
    def test_integral_float_is_accepted(self):
        z, mu, lv = _batch()
        ref = vaemath.mutual_information(z, mu, lv, dataset_size=100, method="mss")
        got = vaemath.mutual_information(z, mu, lv, dataset_size=100.0, method="mss")
        assert float(got) == float(ref)

    def test_fractional_float_is_rejected(self):
        z, mu, lv = _batch()
        with pytest.raises(ValueError, match="whole number"):
            vaemath.total_correlation(z, mu, lv, dataset_size=100.5)


class TestSharedPosteriorParameters:
    @pytest.mark.parametrize("shape", [(3,), (1, 3)], ids=["(D,)", "(1, D)"])
    def test_logvar_broadcasts_to_the_batch(self, shape):
        z, mu, _ = _batch()
        shared = np.linspace(-1.0, 0.0, 3).reshape(shape)
        full = np.broadcast_to(shared, z.shape).copy()
        for fn in (vaemath.total_correlation, vaemath.mutual_information, vaemath.dimensionwise_kl):
            assert float(fn(z, mu, shared)) == pytest.approx(float(fn(z, mu, full)), rel=1e-13)

    def test_shared_logvar_gets_its_gradient(self):
        torch = pytest.importorskip("torch")
        z, mu, _ = _batch()
        shared = torch.zeros(3, dtype=torch.float64, requires_grad=True)
        vaemath.elbo_decomposition(torch.tensor(z), torch.tensor(mu), shared).kl.backward()
        full = torch.zeros(8, 3, dtype=torch.float64, requires_grad=True)
        vaemath.elbo_decomposition(torch.tensor(z), torch.tensor(mu), full).kl.backward()
        torch.testing.assert_close(shared.grad, full.grad.sum(0))

    def test_non_broadcasting_shapes_are_named(self):
        z, mu, lv = _batch()
        with pytest.raises(ValueError, match="broadcast to the shape"):
            vaemath.total_correlation(z, mu, lv[:, :2])


class TestWholeDatasetBatch:
    @pytest.mark.parametrize("method", ["mws", "mss"])
    def test_dataset_size_equal_to_batch_is_exact(self, method):
        z, mu, lv = _batch()
        exact = vaemath.elbo_decomposition(z, mu, lv)  # the batch mixture is q(z) here
        got = vaemath.elbo_decomposition(z, mu, lv, dataset_size=8, method=method)
        for name in ("mutual_information", "total_correlation", "dimensionwise_kl"):
            assert float(getattr(got, name)) == pytest.approx(
                float(getattr(exact, name)), rel=1e-13
            )


class TestBothPerSampleEstimates:
    def test_one_call_returns_both(self):
        z, mu, lv = _batch()
        lq, lqd = vaemath.log_aggregate_posterior(z, mu, lv, dataset_size=50, return_marginals=True)
        np.testing.assert_array_equal(
            lq, vaemath.log_aggregate_posterior(z, mu, lv, dataset_size=50)
        )
        np.testing.assert_array_equal(
            lqd, vaemath.log_marginal_aggregate_posterior(z, mu, lv, dataset_size=50)
        )

    def test_one_pass(self, monkeypatch):
        from vaemath._estimators import _tiles

        calls = []
        original = _tiles.forward
        monkeypatch.setattr(_tiles, "forward", lambda *a, **k: calls.append(1) or original(*a, **k))
        z, mu, lv = _batch()
        vaemath.log_aggregate_posterior(z, mu, lv, return_marginals=True)
        assert len(calls) == 1


class TestArrayBandwidth:
    @pytest.mark.parametrize(
        "call",
        [
            pytest.param(lambda x, y, h: vaemath.mmd2(x, y, bandwidth=h), id="mmd2"),
            pytest.param(lambda x, y, h: vaemath.mmd2(x, y, kernel="imq", bandwidth=h), id="imq"),
            pytest.param(lambda x, y, h: vaemath.mmd2_linear(x, y[:50], bandwidth=h), id="linear"),
            pytest.param(lambda x, y, h: vaemath.mmd2_gaussian_prior(x, bandwidth=h), id="prior"),
            pytest.param(lambda x, y, h: vaemath.mmd2_uniform_prior(x, bandwidth=h), id="uniform"),
            pytest.param(lambda x, y, h: vaemath.rbf_kernel(x, y, h).sum(), id="rbf_kernel"),
        ],
    )
    def test_learnable_bandwidth(self, call):
        torch = pytest.importorskip("torch")
        g = torch.Generator().manual_seed(0)
        x = torch.randn(50, 3, generator=g, dtype=torch.float64)
        y = torch.randn(60, 3, generator=g, dtype=torch.float64) + 0.3
        h = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
        value = call(x, y, h)
        assert float(value.detach()) == pytest.approx(float(call(x, y, 1.5)), rel=1e-13)
        value.backward()
        eps = 1e-6
        slope = (float(call(x, y, 1.5 + eps)) - float(call(x, y, 1.5 - eps))) / (2 * eps)
        assert float(h.grad) == pytest.approx(slope, rel=1e-6, abs=1e-9)
        several = torch.tensor([1.0, 2.0], dtype=torch.float64)
        assert float(call(x, y, several)) == pytest.approx(float(call(x, y, [1.0, 2.0])), rel=1e-13)

    def test_bad_array_bandwidth(self):
        torch = pytest.importorskip("torch")
        x = torch.randn(10, 2)
        with pytest.raises(ValueError, match="positive"):
            vaemath.mmd2(x, x + 1, bandwidth=torch.tensor(-1.0))
        with pytest.raises(ValueError, match="0-d or a non-empty 1-d"):
            vaemath.mmd2(x, x + 1, bandwidth=torch.ones(2, 2))
