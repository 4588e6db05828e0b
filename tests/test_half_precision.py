"""float16 and bfloat16 inputs: computed in float32 inside, rounded once to the input type.

The reference is the same call in float32, rounded to the half type: the
result must be that value to within one rounding of the half type (plus the
float32 result's own rounding, far smaller).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import vaemath

torch = pytest.importorskip("torch")

HALF = [pytest.param(torch.float16, id="float16"), pytest.param(torch.bfloat16, id="bfloat16")]


def _data():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(64, 4, generator=g)
    logvar = torch.rand(64, 4, generator=g) * 2 - 2
    z = mu + torch.exp(0.5 * logvar) * torch.randn(64, 4, generator=g)
    factors = torch.randint(0, 4, (64, 2), generator=g)
    tril = torch.diag_embed(torch.exp(0.5 * logvar[:, :2])) + torch.tril(
        0.3 * torch.randn(64, 2, 2, generator=g), diagonal=-1
    )
    return z, mu, logvar, (factors, tril)


CALLS = {
    "gaussian_kl": lambda z, mu, lv, f: vaemath.gaussian_kl(mu, lv),
    "gaussian_log_density": lambda z, mu, lv, f: vaemath.gaussian_log_density(z, mu, lv),
    "log_aggregate_posterior": lambda z, mu, lv, f: vaemath.log_aggregate_posterior(z, mu, lv),
    "log_marginal_aggregate_posterior": lambda z, mu, lv, f: (
        vaemath.log_marginal_aggregate_posterior(z, mu, lv, dataset_size=1000)
    ),
    "mutual_information": lambda z, mu, lv, f: vaemath.mutual_information(z, mu, lv),
    "total_correlation": lambda z, mu, lv, f: vaemath.total_correlation(
        z, mu, lv, dataset_size=500, method="mss"
    ),
    "dimensionwise_kl": lambda z, mu, lv, f: vaemath.dimensionwise_kl(z, mu, lv),
    "elbo_decomposition": lambda z, mu, lv, f: vaemath.elbo_decomposition(z, mu, lv).kl,
    "dataset_decomposition": lambda z, mu, lv, f: vaemath.dataset_decomposition(mu, lv).kl,
    "gaussian_mixture_log_density": lambda z, mu, lv, f: vaemath.gaussian_mixture_log_density(
        z, mu[:8], lv[:8]
    ),
    "mvn_kl": lambda z, mu, lv, f: vaemath.mvn_kl(mu[:, :2], f[1].to(mu.dtype)),
    "rbf_kernel": lambda z, mu, lv, f: vaemath.rbf_kernel(z, mu, 1.5),
    "imq_kernel": lambda z, mu, lv, f: vaemath.imq_kernel(z, mu, 1.5),
    "mmd2": lambda z, mu, lv, f: vaemath.mmd2(z, mu * 1.2, bandwidth=4.0),
    "mmd2_linear": lambda z, mu, lv, f: vaemath.mmd2_linear(z, mu * 1.2, bandwidth=2.0),
    "mmd2_gaussian_prior": lambda z, mu, lv, f: vaemath.mmd2_gaussian_prior(z, bandwidth=2.0),
    "mmd2_uniform_prior": lambda z, mu, lv, f: vaemath.mmd2_uniform_prior(z, bandwidth=2.0),
    "mutual_information_gap": lambda z, mu, lv, f: (
        vaemath.mutual_information_gap(mu, lv, f[0]).mutual_information
    ),
    "active_units": lambda z, mu, lv, f: vaemath.active_units(mu),
    "bernoulli_kl": lambda z, mu, lv, f: vaemath.bernoulli_kl(mu, lv),
    "categorical_kl": lambda z, mu, lv, f: vaemath.categorical_kl(mu, lv),
}


@pytest.mark.parametrize("half", HALF)
@pytest.mark.parametrize("name", list(CALLS))
def test_half_is_float32_rounded_once(name, half):
    z, mu, lv, f = _data()
    call = CALLS[name]
    # the float32 reference runs on the same (half-rounded) inputs
    zh, muh, lvh = (t.to(half) for t in (z, mu, lv))
    ref = call(*(t.float() for t in (zh, muh, lvh)), (f[0], f[1].to(half).float()))
    f = (f[0], f[1].to(half))
    out = call(zh, muh, lvh, f)
    assert out.dtype == half, (name, out.dtype)
    eps = torch.finfo(half).eps
    torch.testing.assert_close(out.float(), ref.to(half).float(), rtol=eps, atol=eps * 1e-3)


def test_reported_float16_cases():
    # log q(z) of a 2-point batch: float16 lost 0.065 nats to its exp floor before
    x = torch.tensor([[0.0], [5.0]])
    got = vaemath.log_aggregate_posterior(x.half(), x.half(), torch.zeros(2, 1).half())
    want = vaemath.log_aggregate_posterior(x, x, torch.zeros(2, 1))
    torch.testing.assert_close(got.float(), want.half().float())
    # mmd2 in float16 at n = 256 returned inf before
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(256, 8, generator=g), torch.randn(256, 8, generator=g) + 0.3
    value = vaemath.mmd2(a.half(), b.half(), bandwidth=4.0)
    assert math.isfinite(float(value))
    assert float(value) == pytest.approx(
        float(vaemath.mmd2(a.half().float(), b.half().float(), bandwidth=4.0)), rel=2e-3
    )


def test_gradients_flow_in_half():
    z, mu, lv, _ = _data()
    muh = mu.half().requires_grad_(True)
    vaemath.total_correlation(z.half(), muh, lv.half()).backward()
    assert muh.grad is not None
    assert muh.grad.dtype == torch.float16
    assert bool(torch.isfinite(muh.grad).all())


def test_numpy_float16():
    rng = np.random.default_rng(0)
    mu = rng.standard_normal((32, 3)).astype(np.float16)
    lv = np.zeros((32, 3), dtype=np.float16)
    out = vaemath.dataset_decomposition(mu, lv)
    assert out.kl.dtype == np.float16
    ref = vaemath.dataset_decomposition(mu.astype(np.float32), lv.astype(np.float32))
    assert float(out.kl) == pytest.approx(float(np.float16(ref.kl)), rel=1e-3)


def test_mixed_half_and_float32_promotes():
    z, mu, lv, _ = _data()
    out = vaemath.total_correlation(z.half(), mu, lv)
    assert out.dtype == torch.float32
