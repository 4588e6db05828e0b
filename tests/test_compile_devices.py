"""torch.compile(fullgraph=True) and device discipline for the Gaussian functions.

Compiling costs a few seconds per function on CPU; the cases are few and small.
The "meta" device stands in for a GPU where none exists: a result on "meta"
proves no step moved data to the host or created an array on the default
device.
"""

from __future__ import annotations

import numpy as np
import pytest

import vaemath
from vaemath import gaussian_kl, gaussian_log_density, mvn_kl

torch = pytest.importorskip("torch")


def _inputs(dtype=torch.float32):
    gen = torch.Generator().manual_seed(0)
    mu = torch.randn(16, 8, generator=gen, dtype=dtype)
    logvar = torch.randn(16, 8, generator=gen, dtype=dtype)
    return mu, logvar


class TestTorchCompile:
    @pytest.mark.parametrize(
        "fn",
        [
            pytest.param(lambda m, v: gaussian_kl(m, v).sum(), id="gaussian_kl standard"),
            pytest.param(lambda m, v: gaussian_kl(m, v, 0.5, -1.0).sum(), id="gaussian_kl prior"),
            pytest.param(lambda m, v: gaussian_log_density(m, v, v).sum(), id="log_density"),
        ],
    )
    def test_fullgraph_matches_eager(self, fn):
        mu, logvar = _inputs()
        compiled = torch.compile(fn, fullgraph=True)
        torch.testing.assert_close(compiled(mu, logvar), fn(mu, logvar), rtol=2e-6, atol=0)

    def test_compiled_gradient(self):
        mu, logvar = _inputs(torch.float64)
        mu.requires_grad_(True)
        logvar.requires_grad_(True)
        compiled = torch.compile(lambda m, v: gaussian_kl(m, v, 0.3, 0.2).sum(), fullgraph=True)
        (g_mu, g_lv) = torch.autograd.grad(compiled(mu, logvar), (mu, logvar))
        torch.testing.assert_close(g_mu, (mu - 0.3).detach() * np.exp(-0.2))
        torch.testing.assert_close(g_lv, 0.5 * torch.expm1(logvar.detach() - 0.2))

    def test_mvn_kl_fullgraph(self):
        gen = torch.Generator().manual_seed(1)
        scale = torch.tril(torch.randn(4, 3, 3, generator=gen)) + 2 * torch.eye(3)
        mu = torch.randn(4, 3, generator=gen)
        compiled = torch.compile(mvn_kl, fullgraph=True)
        torch.testing.assert_close(
            compiled(mu, scale, None, scale * 1.5), mvn_kl(mu, scale, None, scale * 1.5)
        )


class TestTorchCompileEstimatorsAndMMD:
    def test_elbo_decomposition_fullgraph(self):
        gen = torch.Generator().manual_seed(2)
        z, mu = torch.randn(2, 48, 5, generator=gen, dtype=torch.float64)
        logvar = 0.3 * torch.randn(48, 5, generator=gen, dtype=torch.float64)

        def loss(z, mu, logvar):
            r = vaemath.elbo_decomposition(
                z, mu, logvar, 0.5, -1.0, dataset_size=1000, method="mss"
            )
            return r.mutual_information + 2.0 * r.total_correlation + r.dimensionwise_kl

        compiled = torch.compile(loss, fullgraph=True)
        torch.testing.assert_close(compiled(z, mu, logvar), loss(z, mu, logvar))

    def test_mmd_fullgraph(self):
        gen = torch.Generator().manual_seed(3)
        x, y = torch.randn(2, 40, 4, generator=gen)

        def loss(x, y):
            return vaemath.mmd2(x, y, bandwidth=[0.5, 1.0]) + vaemath.mmd2_gaussian_prior(
                x, 0.5, -1.0, bandwidth=1.0
            )

        compiled = torch.compile(loss, fullgraph=True)
        torch.testing.assert_close(compiled(x, y), loss(x, y))


class TestDevices:
    @pytest.mark.parametrize(
        "call",
        [
            pytest.param(gaussian_kl, id="gaussian_kl standard"),
            pytest.param(lambda m, v: gaussian_kl(m, v, 0.5, v), id="gaussian_kl prior"),
            pytest.param(lambda m, v: gaussian_log_density(m, 0.0, v), id="log_density"),
        ],
    )
    def test_meta_device_stays_on_device(self, call):
        mu = torch.empty(5, 3, device="meta")
        out = call(mu, torch.empty(5, 3, device="meta"))
        assert out.device.type == "meta"
        assert tuple(out.shape) == (5, 3)

    def test_mvn_kl_meta(self):
        mu = torch.empty(2, 3, device="meta")
        out = mvn_kl(mu, torch.empty(2, 3, 3, device="meta"), mu, torch.empty(3, 3, device="meta"))
        assert out.device.type == "meta"
        assert tuple(out.shape) == (2,)

    @pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
    def test_cuda_results_stay_on_cuda(self):
        mu, logvar = (t.cuda() for t in _inputs())
        assert gaussian_kl(mu, logvar, 0.5, 0.1).device.type == "cuda"
        assert gaussian_kl(mu, logvar).device.type == "cuda"


class TestJaxJit:
    @pytest.fixture
    def jax(self):
        jax = pytest.importorskip("jax")
        jax.config.update("jax_enable_x64", True)
        return jax

    @pytest.mark.parametrize(
        "fn",
        [
            pytest.param(lambda m, v: gaussian_kl(m, v).sum(), id="gaussian_kl standard"),
            pytest.param(
                lambda m, v: gaussian_kl(m, v, 0.5, v * 0.3).sum(), id="gaussian_kl prior"
            ),
            pytest.param(lambda m, v: gaussian_log_density(m, 0.1, v).sum(), id="log_density"),
        ],
    )
    def test_jit_and_grad_match_numpy(self, jax, fn):
        rng = np.random.default_rng(0)
        mu, logvar = rng.normal(size=(2, 6, 4))
        jnp = jax.numpy
        jitted = jax.jit(fn)(jnp.asarray(mu), jnp.asarray(logvar))
        np.testing.assert_allclose(float(jitted), float(fn(mu, logvar)), rtol=1e-13)
        g_mu, g_lv = jax.grad(fn, argnums=(0, 1))(jnp.asarray(mu), jnp.asarray(logvar))
        # central finite differences of the NumPy evaluation
        eps = 1e-6
        for grad, which in ((g_mu, 0), (g_lv, 1)):
            for idx in [(0, 0), (3, 2), (5, 3)]:
                args_p = [mu.copy(), logvar.copy()]
                args_m = [mu.copy(), logvar.copy()]
                args_p[which][idx] += eps
                args_m[which][idx] -= eps
                fd = (float(fn(*args_p)) - float(fn(*args_m))) / (2 * eps)
                np.testing.assert_allclose(float(grad[idx]), fd, rtol=1e-6, atol=1e-8)

    def test_estimators_and_mmd_jit_grad(self, jax):
        jnp = jax.numpy
        rng = np.random.default_rng(4)
        z, mu = rng.normal(size=(2, 32, 3))
        logvar = 0.3 * rng.normal(size=(32, 3))

        def loss(z, mu, logvar):
            r = vaemath.elbo_decomposition(z, mu, logvar, dataset_size=500, method="mws")
            return r.kl + vaemath.mmd2(z, mu, bandwidth=1.0)

        args = [jnp.asarray(a) for a in (z, mu, logvar)]
        np.testing.assert_allclose(
            float(jax.jit(loss)(*args)), float(loss(z, mu, logvar)), rtol=1e-10
        )
        grads = jax.jit(jax.grad(loss, argnums=(1, 2)))(*args)
        eps = 1e-6
        for which, grad in zip((1, 2), grads, strict=True):
            base = [z.copy(), mu.copy(), logvar.copy()]
            plus = [a.copy() for a in base]
            minus = [a.copy() for a in base]
            plus[which][5, 1] += eps
            minus[which][5, 1] -= eps
            fd = (float(loss(*plus)) - float(loss(*minus))) / (2 * eps)
            np.testing.assert_allclose(float(grad[5, 1]), fd, rtol=1e-5, atol=1e-8)

    def test_mvn_kl_jit(self, jax):
        jnp = jax.numpy
        scale = jnp.eye(3) * 2.0 + jnp.tril(jnp.ones((3, 3)), -1) * 0.1
        out = jax.jit(mvn_kl)(jnp.zeros(3), scale, jnp.ones(3), scale * 1.1)
        ref = mvn_kl(np.zeros(3), np.asarray(scale), np.ones(3), np.asarray(scale) * 1.1)
        np.testing.assert_allclose(float(out), float(ref), rtol=1e-12)
