"""Tests of the MMD kernels and estimators (vaemath._mmd).

References are brute-force float64 NumPy over the explicit ``(n, m, D)``
differences (small sizes only), Gauss-Hermite quadrature, and the closed form
of the RBF-kernel MMD² between two Gaussians with full covariances (computed
with determinants and solves, independently of the per-dimension products in
the library).

Randomized statistical tests
----------------------------
The Monte-Carlo tests draw with fixed seeds and accept a deviation of up to
4 standard errors (estimated from the same draws). With a fixed seed each test
is deterministic; under a different seed a correct implementation would fail
one such check with probability about 6e-5. A failure after a change of seed,
NumPy version or sampling order should be investigated by re-running with a
few other seeds before the code is suspected.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from vaemath import imq_kernel, mmd2, mmd2_gaussian_prior, mmd2_linear, rbf_kernel
from vaemath._lib._testing import assert_close, to_numpy

HYPOTHESIS = settings(
    deadline=None, max_examples=20, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


# -- float64 brute-force references -------------------------------------------------


def sqdist_ref(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    return ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)


def gram_ref(x: np.ndarray, y: np.ndarray, kernel: str, scales: Any) -> np.ndarray:
    d = sqdist_ref(x, y)
    scales = np.atleast_1d(np.asarray(scales, dtype=np.float64))
    if kernel == "rbf":
        return sum(np.exp(-d / (2 * h * h)) for h in scales)
    return sum(c / (c + d) for c in scales)


def mmd2_ref(x: np.ndarray, y: np.ndarray, kernel: str, scales: Any, unbiased: bool) -> float:
    n, m = len(x), len(y)
    kxx = gram_ref(x, x, kernel, scales)
    kyy = gram_ref(y, y, kernel, scales)
    kxy = gram_ref(x, y, kernel, scales)
    if unbiased:
        off_x = kxx[~np.eye(n, dtype=bool)].sum() / (n * (n - 1))
        off_y = kyy[~np.eye(m, dtype=bool)].sum() / (m * (m - 1))
        return off_x + off_y - 2 * kxy.mean()
    return kxx.mean() + kyy.mean() - 2 * kxy.mean()


def gaussian_mean_kernel(mu1, cov1, mu2, cov2, h: float) -> float:
    """E k(X, Y), X ~ N(mu1, cov1), Y ~ N(mu2, cov2) independent, RBF kernel."""
    dim = len(mu1)
    s = np.asarray(cov1) + np.asarray(cov2)
    delta = np.asarray(mu1) - np.asarray(mu2)
    det = np.linalg.det(np.eye(dim) + s / h**2)
    quad = delta @ np.linalg.solve(h**2 * np.eye(dim) + s, delta)
    return float(det**-0.5 * np.exp(-0.5 * quad))


def gaussian_mmd2(mu1, cov1, mu2, cov2, h: float) -> float:
    """Closed-form population MMD² between two Gaussians for the RBF kernel."""
    return (
        gaussian_mean_kernel(mu1, cov1, mu1, cov1, h)
        + gaussian_mean_kernel(mu2, cov2, mu2, cov2, h)
        - 2 * gaussian_mean_kernel(mu1, cov1, mu2, cov2, h)
    )


def skip_unless_torch(backend: Any) -> None:
    if not backend.value.startswith("torch"):
        pytest.skip("autograd test: torch only")


RNG_SEED = 20260501


@pytest.fixture
def samples() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(RNG_SEED)
    return rng.normal(size=(23, 4)), 0.7 * rng.normal(size=(17, 4)) + 0.4


# -- kernels -------------------------------------------------------------------------


class TestRbfKernel:
    @pytest.mark.parametrize("dtype", ["float32", "float64"])
    @pytest.mark.parametrize(
        "bandwidth", [pytest.param(1.3, id="one"), pytest.param([0.5, 2.0], id="multi")]
    )
    def test_matches_brute_force(self, xp, asarray, samples, dtype, bandwidth):
        x, y = samples
        got = rbf_kernel(asarray(x, dtype), asarray(y, dtype), bandwidth)
        expected = gram_ref(x.astype(dtype), y.astype(dtype), "rbf", bandwidth)
        assert_close(got, expected, xp=xp, dtype=getattr(xp, dtype), shape=(23, 17), atol=1e-6)

    def test_exp_over_d_convention(self, xp, asarray, samples):
        # exp(-|x - y|^2 / D) is bandwidth sqrt(D / 2). (InfoVAE's code divides
        # by D^2, not D: see TestInfoVAEMapping.)
        x, y = samples
        dim = x.shape[1]
        got = rbf_kernel(asarray(x), asarray(y), np.sqrt(dim / 2))
        assert_close(got, np.exp(-sqdist_ref(x, y) / dim), xp=xp, rtol=1e-12)

    @HYPOTHESIS
    @given(
        data=hnp.arrays(np.float64, (6, 3), elements=st.floats(-10, 10)),
        bandwidth=st.floats(0.1, 10),
    )
    def test_symmetric_unit_diagonal(self, xp, asarray, data, bandwidth):
        a = asarray(data)
        k = to_numpy(rbf_kernel(a, a, bandwidth))
        np.testing.assert_array_equal(k, k.T)
        np.testing.assert_allclose(np.diag(k), 1.0, rtol=1e-12)
        assert np.all(k <= 1.0)
        assert np.all(k >= 0.0)

    def test_float32_cancellation(self, xp, asarray):
        # Points far from the origin and close to each other: the raw Gram
        # trick in float32 loses everything (|x|^2 ~ 1e6, distances ~ 1e-2);
        # centring on the pooled mean keeps the error at float32 rounding.
        rng = np.random.default_rng(1)
        x = 1000.0 + 0.05 * rng.normal(size=(40, 8))
        y = 1000.0 + 0.05 * rng.normal(size=(30, 8))
        x32, y32 = x.astype(np.float32), y.astype(np.float32)
        expected = gram_ref(x32, y32, "rbf", 0.1)  # float64 direct on the same inputs
        got = to_numpy(rbf_kernel(asarray(x32), asarray(y32), 0.1))
        naive = np.exp(
            -((x32 * x32).sum(1)[:, None] + (y32 * y32).sum(1)[None, :] - 2 * (x32 @ y32.T)).clip(0)
            / np.float32(0.02)
        )
        err = np.abs(got - expected).max()
        assert err < 2e-5, err
        assert np.abs(naive - expected).max() > 100 * err  # the failure mode is real

    @pytest.mark.parametrize(
        ("shapes", "match"),
        [
            pytest.param(((3, 2), (4, 3)), "feature dimensions", id="mismatched D"),
            pytest.param(((3,), (4,)), "shape \\(n, D\\)", id="1-D"),
        ],
    )
    def test_bad_shapes(self, xp, asarray, shapes, match):
        with pytest.raises(ValueError, match=match):
            rbf_kernel(asarray(np.zeros(shapes[0])), asarray(np.zeros(shapes[1])), 1.0)

    @pytest.mark.parametrize("bandwidth", [0.0, -1.0, float("nan"), [1.0, 0.0], []])
    def test_bad_bandwidth(self, xp, asarray, bandwidth):
        x = asarray(np.zeros((3, 2)))
        with pytest.raises(ValueError, match="bandwidth"):
            rbf_kernel(x, x, bandwidth)


class TestImqKernel:
    @pytest.mark.parametrize("dtype", ["float32", "float64"])
    @pytest.mark.parametrize(
        "scale", [pytest.param(2.0, id="one"), pytest.param([0.1, 1.0, 10.0], id="multi")]
    )
    def test_matches_brute_force(self, xp, asarray, samples, dtype, scale):
        x, y = samples
        got = imq_kernel(asarray(x, dtype), asarray(y, dtype), scale)
        expected = gram_ref(x.astype(dtype), y.astype(dtype), "imq", scale)
        assert_close(got, expected, xp=xp, dtype=getattr(xp, dtype), shape=(23, 17), atol=1e-6)

    def test_wae_convention(self, xp, asarray, samples):
        # WAE: C = 2 D sigma^2; k = C / (C + d) is 1/2 at d = C.
        x, _ = samples
        c = 2 * x.shape[1] * 1.0
        k = to_numpy(imq_kernel(asarray(x[:1]), asarray(x[:1] + np.sqrt(c / 4)), c))
        np.testing.assert_allclose(k, 0.5, rtol=1e-12)

    def test_bad_scale(self, xp, asarray):
        x = asarray(np.zeros((3, 2)))
        with pytest.raises(ValueError, match="scale"):
            imq_kernel(x, x, -2.0)


# -- the quadratic-time estimator -------------------------------------------------------------


class TestMMD2:
    @pytest.mark.parametrize("unbiased", [True, False], ids=["U", "V"])
    @pytest.mark.parametrize(
        ("kernel", "bandwidth"),
        [
            pytest.param("rbf", 1.0, id="rbf"),
            pytest.param("rbf", [0.2, 1.0, 5.0], id="rbf multi-scale"),
            pytest.param("imq", 8.0, id="imq"),
            pytest.param("imq", [0.8, 8.0], id="imq multi-scale"),
        ],
    )
    def test_matches_brute_force(self, xp, asarray, samples, kernel, bandwidth, unbiased):
        x, y = samples
        got = mmd2(asarray(x), asarray(y), kernel=kernel, bandwidth=bandwidth, unbiased=unbiased)
        expected = mmd2_ref(x, y, kernel, bandwidth, unbiased)
        assert_close(got, expected, xp=xp, dtype=xp.float64, shape=(), rtol=1e-10, atol=1e-13)

    @pytest.mark.parametrize("unbiased", [True, False], ids=["U", "V"])
    def test_float32(self, xp, asarray, samples, unbiased):
        x, y = samples
        got = mmd2(asarray(x, "float32"), asarray(y, "float32"), bandwidth=1.5, unbiased=unbiased)
        expected = mmd2_ref(x.astype(np.float32), y.astype(np.float32), "rbf", 1.5, unbiased)
        assert_close(got, expected, xp=xp, dtype=xp.float32, shape=(), rtol=0, atol=2e-6)

    def test_float32_far_from_origin(self, xp, asarray):
        # Same data as TestRbfKernel.test_float32_cancellation: the pooled
        # centring keeps the float32 estimate at float32 rounding.
        rng = np.random.default_rng(1)
        x = (1000.0 + 0.05 * rng.normal(size=(40, 8))).astype(np.float32)
        y = (1000.0 + 0.05 * rng.normal(size=(30, 8))).astype(np.float32)
        got = mmd2(asarray(x), asarray(y), bandwidth=0.1)
        assert_close(got, mmd2_ref(x, y, "rbf", 0.1, True), xp=xp, rtol=0, atol=1e-6)

    def test_chunked(self, xp, asarray, monkeypatch):
        # Force many small chunks (and ragged ones) through the symmetric and
        # rectangular block sums.
        import vaemath._mmd._blocks as blocks

        monkeypatch.setattr(blocks, "_CHUNK_ELEMENTS", 150)
        rng = np.random.default_rng(2)
        x, y = rng.normal(size=(29, 3)), rng.normal(size=(19, 3)) + 0.5
        for kernel, bw in (("rbf", [0.7, 2.0]), ("imq", 3.0)):
            got = mmd2(asarray(x), asarray(y), kernel=kernel, bandwidth=bw)
            assert_close(got, mmd2_ref(x, y, kernel, bw, True), xp=xp, rtol=1e-10)

    def test_native_matches_generic(self, backend, xp, asarray, samples, monkeypatch):
        # The in-place torch / NumPy kernel passes of the block engine against
        # the generic Array-API path (which clamps) on the same arrays.
        if backend.value not in ("numpy", "torch"):
            pytest.skip("native fast paths: numpy and torch only")
        import vaemath._mmd._kernels as kernels

        x, y = asarray(samples[0]), asarray(samples[1])
        cases = [("rbf", 1.1), ("rbf", [0.5, 2.0]), ("imq", 3.0), ("imq", [0.5, 4.0])]
        native = [mmd2(x, y, kernel=k, bandwidth=b) for k, b in cases]
        monkeypatch.setattr(kernels, "is_torch_namespace", lambda _: False)
        monkeypatch.setattr(kernels, "is_numpy_namespace", lambda _: False)
        for (k, b), expected in zip(cases, native):
            got = mmd2(x, y, kernel=k, bandwidth=b)
            assert_close(got, to_numpy(expected), xp=xp, rtol=1e-13, atol=1e-15)

    @pytest.mark.parametrize("unbiased", [True, False], ids=["U", "V"])
    def test_callable_kernel(self, xp, asarray, samples, unbiased):
        x, y = samples

        def laplace(a, b):
            d = xp.sum(xp.abs(a[:, None, :] - b[None, :, :]), axis=-1)
            return xp.exp(-d)

        got = mmd2(asarray(x), asarray(y), kernel=laplace, unbiased=unbiased)
        kxx = np.exp(-np.abs(x[:, None] - x[None]).sum(-1))
        kyy = np.exp(-np.abs(y[:, None] - y[None]).sum(-1))
        kxy = np.exp(-np.abs(x[:, None] - y[None]).sum(-1))
        n, m = len(x), len(y)
        if unbiased:
            expected = (kxx.sum() - n) / (n * (n - 1)) + (kyy.sum() - m) / (m * (m - 1))
        else:
            expected = kxx.mean() + kyy.mean()
        expected -= 2 * kxy.mean()
        assert_close(got, expected, xp=xp, rtol=1e-10)

    @pytest.mark.parametrize("kernel", ["rbf", "imq"])
    @pytest.mark.parametrize(
        "n_pooled", [pytest.param(40, id="40 points"), pytest.param(41, id="41 points")]
    )
    def test_median_heuristic(self, xp, asarray, kernel, n_pooled):
        # 40 points: 780 pairs, 41: 820 (both even: the mean of the middle two);
        # the odd case is test_median_heuristic_odd_pairs.
        rng = np.random.default_rng(3)
        x, y = rng.normal(size=(n_pooled - 15, 2)), rng.normal(size=(15, 2)) + 1.0
        z = np.concatenate([x, y])
        iu = np.triu_indices(len(z), k=1)
        med = np.median(sqdist_ref(z, z)[iu])
        scale = np.sqrt(med) if kernel == "rbf" else med
        got = mmd2(asarray(x), asarray(y), kernel=kernel, bandwidth="median")
        assert_close(got, mmd2_ref(x, y, kernel, scale, True), xp=xp, rtol=1e-9)

    def test_median_heuristic_odd_pairs(self, xp, asarray):
        # 3 + 3 points: 15 distinct pairs, the median is the 8th smallest.
        x = np.array([[0.0], [1.0], [3.0]])
        y = np.array([[7.0], [12.0], [20.0]])
        z = np.concatenate([x, y])
        pairs = np.sort(sqdist_ref(z, z)[np.triu_indices(6, k=1)])
        got = mmd2(asarray(x), asarray(y), bandwidth="median", unbiased=False)
        expected = mmd2_ref(x, y, "rbf", np.sqrt(pairs[7]), False)
        assert_close(got, expected, xp=xp, rtol=1e-10)

    @HYPOTHESIS
    @given(
        # Few distinct shapes: each new shape costs JAX a compilation.
        x=hnp.arrays(
            np.float64, st.tuples(st.sampled_from([1, 5]), st.just(2)), elements=st.floats(-5, 5)
        ),
        y=hnp.arrays(
            np.float64, st.tuples(st.sampled_from([1, 4]), st.just(2)), elements=st.floats(-5, 5)
        ),
        bandwidth=st.floats(0.2, 5.0),
    )
    def test_biased_never_negative(self, xp, asarray, x, y, bandwidth):
        value = float(to_numpy(mmd2(asarray(x), asarray(y), bandwidth=bandwidth, unbiased=False)))
        assert value >= 0.0
        np.testing.assert_allclose(value, mmd2_ref(x, y, "rbf", bandwidth, False), atol=1e-12)

    def test_biased_zero_for_equal_samples(self, xp, asarray, samples):
        x, _ = samples
        value = mmd2(asarray(x + 1e3), asarray(x + 1e3), unbiased=False)
        assert_close(value, 0.0, xp=xp, atol=1e-12)

    @pytest.mark.parametrize(
        ("n", "m"), [pytest.param(24, 24, id="n = m"), pytest.param(12, 40, id="n != m")]
    )
    def test_unbiased_mean_matches_closed_form(self, xp, asarray, n, m):
        # Two 2-D Gaussians with correlated covariances; RBF bandwidth 1.2.
        rng = np.random.default_rng(RNG_SEED + n)
        mu1, mu2 = np.array([0.0, 0.3]), np.array([0.5, -0.2])
        cov1 = np.array([[1.0, 0.3], [0.3, 0.5]])
        cov2 = np.array([[0.6, -0.2], [-0.2, 1.2]])
        l1, l2 = np.linalg.cholesky(cov1), np.linalg.cholesky(cov2)
        h = 1.2
        reps = 200
        draws = np.empty(reps)
        for r in range(reps):
            x = mu1 + rng.normal(size=(n, 2)) @ l1.T
            y = mu2 + rng.normal(size=(m, 2)) @ l2.T
            draws[r] = float(to_numpy(mmd2(asarray(x), asarray(y), bandwidth=h)))
        exact = gaussian_mmd2(mu1, cov1, mu2, cov2, h)
        se = draws.std(ddof=1) / np.sqrt(reps)
        assert abs(draws.mean() - exact) < 4 * se, (draws.mean(), exact, se)
        # The biased estimator is measurably biased at these sizes.
        assert exact > 0.05

    @pytest.mark.parametrize(
        ("kwargs", "shapes", "match"),
        [
            pytest.param({}, ((5, 2), (5, 3)), "feature dimensions", id="mismatched D"),
            pytest.param({}, ((1, 2), (5, 2)), "at least 2 samples", id="one sample U"),
            pytest.param({}, ((5, 2), (1, 2)), "`y` must have at least 2", id="one y sample U"),
            pytest.param({"unbiased": False}, ((0, 2), (5, 2)), "at least 1", id="empty V"),
            pytest.param(
                {"kernel": "gauss"},
                ((5, 2), (5, 2)),
                "`kernel` must be one of",
                id="unknown kernel",
            ),
            pytest.param(
                {"bandwidth": -1.0}, ((5, 2), (5, 2)), "positive", id="negative bandwidth"
            ),
            pytest.param({"bandwidth": 0}, ((5, 2), (5, 2)), "positive", id="zero bandwidth"),
            pytest.param({"bandwidth": "mean"}, ((5, 2), (5, 2)), "median", id="unknown heuristic"),
            pytest.param(
                {"kernel": "imq", "bandwidth": [1.0, -2.0]},
                ((5, 2), (5, 2)),
                r"bandwidth\[1\]",
                id="bad scale in list",
            ),
        ],
    )
    def test_bad_input(self, xp, asarray, kwargs, shapes, match):
        x, y = asarray(np.ones(shapes[0])), asarray(np.ones(shapes[1]))
        with pytest.raises(ValueError, match=match):
            mmd2(x, y, **kwargs)

    def test_bad_callable_shape(self, xp, asarray):
        x = asarray(np.ones((4, 2)))
        with pytest.raises(ValueError, match="Gram matrix"):
            mmd2(x, x, kernel=lambda a, b: xp.sum(a, axis=1))

    def test_nan_propagates(self, xp, asarray, samples):
        x, y = samples
        x = x.copy()
        x[3, 1] = np.nan
        assert np.isnan(to_numpy(mmd2(asarray(x), asarray(y))))

    def test_gradcheck(self, backend, xp, asarray):
        skip_unless_torch(backend)
        import torch

        rng = np.random.default_rng(4)
        x = asarray(rng.normal(size=(6, 3))).requires_grad_(True)
        y = asarray(rng.normal(size=(5, 3)) + 0.3).requires_grad_(True)
        for kwargs in (
            {"bandwidth": 0.9},
            {"bandwidth": [0.5, 2.0], "unbiased": False},
            {"kernel": "imq", "bandwidth": 2.0},
            {"kernel": "imq", "bandwidth": [0.5, 4.0]},
        ):
            assert torch.autograd.gradcheck(lambda a, b, kw=kwargs: mmd2(a, b, **kw), (x, y))
            assert torch.autograd.gradgradcheck(lambda a, b, kw=kwargs: mmd2(a, b, **kw), (x, y))

    def test_gradient_matches_brute_force_float32(self, backend, xp, asarray):
        skip_unless_torch(backend)
        import torch

        rng = np.random.default_rng(5)
        x64 = rng.normal(size=(300, 8))
        y64 = rng.normal(size=(200, 8))
        x = asarray(x64, "float32").requires_grad_(True)
        mmd2(x, asarray(y64, "float32"), bandwidth=[1.0, 3.0]).backward()
        xr = torch.tensor(x64, requires_grad=True)
        yr = torch.tensor(y64)

        def k(a, b):
            d = ((a[:, None] - b[None]) ** 2).sum(-1)
            return torch.exp(-d / 2) + torch.exp(-d / 18)

        n = 300
        kxx = k(xr, xr)
        ref = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1)) - 2 * k(xr, yr).mean()
        ref.backward()
        np.testing.assert_allclose(x.grad.numpy(), xr.grad.numpy(), atol=1e-7, rtol=1e-3)

    def test_median_bandwidth_is_constant(self, backend, xp, asarray, samples):
        skip_unless_torch(backend)
        x, y = samples
        xt = asarray(x).requires_grad_(True)
        mmd2(xt, asarray(y), bandwidth="median").backward()
        z = np.concatenate([x, y])
        h = float(np.sqrt(np.median(sqdist_ref(z, z)[np.triu_indices(len(z), k=1)])))
        xf = asarray(x).requires_grad_(True)
        mmd2(xf, asarray(y), bandwidth=h).backward()
        np.testing.assert_allclose(xt.grad.numpy(), xf.grad.numpy(), rtol=1e-10, atol=1e-14)

    def test_requires_grad_survives(self, backend, xp, asarray, samples):
        skip_unless_torch(backend)
        x, y = samples
        xt = asarray(x).requires_grad_(True)
        for fn in (
            lambda: mmd2(xt, asarray(y)),
            lambda: mmd2(xt, asarray(y), kernel="imq", bandwidth="median"),
            lambda: mmd2_linear(xt[:16], asarray(y)[:16]),
            lambda: mmd2_gaussian_prior(xt, bandwidth=[1.0, 2.0]),
            lambda: rbf_kernel(xt, xt, 1.0),
            lambda: imq_kernel(xt, xt, 1.0),
        ):
            assert fn().requires_grad


# -- memory ---------------------------------------------------------------------------------


MEMORY_SCRIPT = textwrap.dedent(
    """
    import resource, sys
    import numpy as np


    def peak_kib():
        # VmHWM belongs to this process image; ru_maxrss can carry over the
        # RSS of the forked parent (pytest) across exec on Linux.
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


    backend = sys.argv[1]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4096, 128), dtype=np.float32)
    y = rng.standard_normal((4096, 128), dtype=np.float32)
    if backend == "torch":
        import torch
        x, y = torch.from_numpy(x), torch.from_numpy(y)
    import vaemath
    vaemath.mmd2(x[:8], y[:8])  # first-call allocations (thread pools, ...)
    before = peak_kib()
    value = vaemath.mmd2(x, y, bandwidth=[4.0, 16.0])
    value = vaemath.mmd2(x, y, kernel="imq", bandwidth=256.0, unbiased=False)
    after = peak_kib()
    print(before, after, float(value))
    """
)


class TestMemory:
    @pytest.mark.parametrize("library", ["numpy", "torch"])
    def test_ceiling_4096x128_float32(self, library):
        pytest.importorskip(library)
        # An (n, m, D) expansion needs 4096 * 4096 * 128 * 4 B = 8 GiB per
        # temporary and three full (n, m) float32 Gram blocks need 192 MiB;
        # chunked, the growth is a few 4 MiB chunks (measured: numpy 24 MiB,
        # torch 47 MiB including its allocator's cache).
        result = subprocess.run(
            [sys.executable, "-c", MEMORY_SCRIPT, library],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        before, after, value = result.stdout.split()
        growth_mib = (int(after) - int(before)) / 1024  # KiB
        assert growth_mib < 100, growth_mib
        assert int(after) / 1024 < 1024  # whole process, imports included
        assert float(value) >= 0.0


# -- the sample-free prior term -----------------------------------------------------------


def gauss_hermite_expectations(x: np.ndarray, mu, var, h: float, order: int = 60):
    """E_y k(x_i, y) and E k(y, y') by tensor Gauss-Hermite quadrature (D <= 2)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(order)  # weight exp(-t^2 / 2)
    weights = weights / weights.sum()
    dim = x.shape[1]
    grids = np.meshgrid(*([nodes] * dim), indexing="ij")
    w = np.prod(np.meshgrid(*([weights] * dim), indexing="ij"), axis=0).ravel()
    pts = np.stack([g.ravel() for g in grids], axis=1) * np.sqrt(var) + mu
    cross = (np.exp(-sqdist_ref(x, pts) / (2 * h * h)) * w).sum(1)
    prior = w @ np.exp(-sqdist_ref(pts, pts) / (2 * h * h)) @ w
    return cross, prior


class TestMMD2GaussianPrior:
    @pytest.mark.parametrize("unbiased", [True, False], ids=["U", "V"])
    @pytest.mark.parametrize(
        ("prior_mu", "prior_logvar"),
        [
            pytest.param(0.0, 0.0, id="standard normal"),
            pytest.param(np.array([0.5, -1.0]), np.array([-0.7, 0.9]), id="diagonal"),
            pytest.param(0.3, np.array([0.2, -0.4]), id="scalar mean"),
        ],
    )
    def test_matches_quadrature(self, xp, asarray, unbiased, prior_mu, prior_logvar):
        rng = np.random.default_rng(6)
        x = rng.normal(size=(15, 2))
        h = 0.8
        mu = np.broadcast_to(prior_mu, (2,))
        var = np.broadcast_to(np.exp(prior_logvar), (2,))
        cross, prior = gauss_hermite_expectations(x, mu, var, h)
        kxx = gram_ref(x, x, "rbf", h)
        n = len(x)
        xx = (kxx.sum() - n) / (n * (n - 1)) if unbiased else kxx.mean()
        expected = xx - 2 * cross.mean() + prior
        pm = asarray(prior_mu) if isinstance(prior_mu, np.ndarray) else prior_mu
        pl = asarray(prior_logvar) if isinstance(prior_logvar, np.ndarray) else prior_logvar
        got = mmd2_gaussian_prior(asarray(x), pm, pl, bandwidth=h, unbiased=unbiased)
        assert_close(got, expected, xp=xp, dtype=xp.float64, shape=(), rtol=1e-10)

    def test_multiscale_is_sum(self, xp, asarray, samples):
        x, _ = samples
        scales = [0.5, 1.0, 4.0]
        total = sum(float(to_numpy(mmd2_gaussian_prior(asarray(x), bandwidth=h))) for h in scales)
        got = mmd2_gaussian_prior(asarray(x), bandwidth=scales)
        assert_close(got, total, xp=xp, rtol=1e-12)

    def test_matches_large_prior_sample(self, xp, asarray):
        # The two-sample estimate against many prior samples converges to the
        # sample-free one (the prior terms' standard error ~ 1 / sqrt(m)).
        rng = np.random.default_rng(7)
        dim = 3
        mu, logvar = np.array([0.2, -0.3, 0.0]), np.array([0.3, -0.5, 0.0])
        x = rng.normal(size=(40, dim)) * 0.8
        y = mu + np.exp(0.5 * logvar) * rng.normal(size=(6000, dim))
        got = float(
            to_numpy(mmd2_gaussian_prior(asarray(x), asarray(mu), asarray(logvar), bandwidth=1.5))
        )
        sampled = float(to_numpy(mmd2(asarray(x), asarray(y), bandwidth=1.5)))
        assert abs(got - sampled) < 3e-3, (got, sampled)

    def test_unbiased_mean_matches_closed_form(self, xp, asarray):
        # x ~ N(a, diag(b)); the estimator's mean is the population MMD² to the prior.
        rng = np.random.default_rng(8)
        a, b = np.array([0.4, -0.2, 0.1]), np.array([0.5, 1.5, 0.8])
        mu, var = np.array([0.0, 0.1, -0.1]), np.array([1.0, 0.7, 1.3])
        h, reps, n = 1.1, 250, 16
        draws = np.array(
            [
                float(
                    to_numpy(
                        mmd2_gaussian_prior(
                            asarray(a + np.sqrt(b) * rng.normal(size=(n, 3))),
                            asarray(mu),
                            asarray(np.log(var)),
                            bandwidth=h,
                        )
                    )
                )
                for _ in range(reps)
            ]
        )
        exact = gaussian_mmd2(a, np.diag(b), mu, np.diag(var), h)
        se = draws.std(ddof=1) / np.sqrt(reps)
        assert abs(draws.mean() - exact) < 4 * se, (draws.mean(), exact, se)

    def test_lower_variance_than_prior_samples(self, xp, asarray):
        rng = np.random.default_rng(9)
        free, sampled = [], []
        for _ in range(60):
            x = rng.normal(size=(32, 4)) + 0.3
            free.append(float(to_numpy(mmd2_gaussian_prior(asarray(x)))))
            y = rng.normal(size=(32, 4))
            sampled.append(float(to_numpy(mmd2(asarray(x), asarray(y)))))
        assert np.var(free) < 0.5 * np.var(sampled)

    def test_float32(self, xp, asarray, samples):
        x, _ = samples
        got = mmd2_gaussian_prior(asarray(x, "float32"), 0.1, -0.2, bandwidth=[1.0, 2.0])
        ref = mmd2_gaussian_prior(x, 0.1, -0.2, bandwidth=[1.0, 2.0])
        assert_close(got, float(ref), xp=xp, dtype=xp.float32, shape=(), rtol=0, atol=2e-6)

    @pytest.mark.parametrize(
        ("kwargs", "shape", "match"),
        [
            pytest.param({"prior_mu": np.zeros(3)}, (5, 2), "prior_mu", id="prior D"),
            pytest.param(
                {"prior_logvar": np.zeros((4, 2))}, (5, 2), "latent shape", id="per-sample prior"
            ),
            pytest.param({}, (1, 2), "at least 2", id="one sample"),
            pytest.param({"bandwidth": [1.0, -1.0]}, (5, 2), "positive", id="bad bandwidth"),
            pytest.param({}, (5,), "shape \\(n, D\\)", id="1-D"),
        ],
    )
    def test_bad_input(self, xp, asarray, kwargs, shape, match):
        kwargs = {k: asarray(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
        with pytest.raises(ValueError, match=match):
            mmd2_gaussian_prior(asarray(np.ones(shape)), **kwargs)

    def test_gradcheck(self, backend, xp, asarray):
        skip_unless_torch(backend)
        import torch

        rng = np.random.default_rng(10)
        x = asarray(rng.normal(size=(5, 3))).requires_grad_(True)
        mu = asarray(rng.normal(size=3)).requires_grad_(True)
        logvar = asarray(0.3 * rng.normal(size=3)).requires_grad_(True)
        for kw in ({"bandwidth": 1.1}, {"bandwidth": [0.5, 2.0], "unbiased": False}):
            assert torch.autograd.gradcheck(
                lambda a, b, c, kw=kw: mmd2_gaussian_prior(a, b, c, **kw), (x, mu, logvar)
            )


# -- the linear-time estimator ------------------------------------------------------------


class TestMMD2Linear:
    @pytest.mark.parametrize("n", [pytest.param(10, id="even"), pytest.param(11, id="odd")])
    @pytest.mark.parametrize(("kernel", "bw"), [("rbf", 1.3), ("imq", [1.0, 4.0])])
    def test_matches_pair_formula(self, xp, asarray, n, kernel, bw):
        rng = np.random.default_rng(11)
        x, y = rng.normal(size=(n, 3)), rng.normal(size=(n, 3)) + 0.2
        terms = []
        for i in range(n // 2):
            a, b, c, d = (
                x[2 * i : 2 * i + 1],
                x[2 * i + 1 : 2 * i + 2],
                y[2 * i : 2 * i + 1],
                y[2 * i + 1 : 2 * i + 2],
            )
            terms.append(
                gram_ref(a, b, kernel, bw)
                + gram_ref(c, d, kernel, bw)
                - gram_ref(a, d, kernel, bw)
                - gram_ref(b, c, kernel, bw)
            )
        got = mmd2_linear(asarray(x), asarray(y), kernel=kernel, bandwidth=bw)
        assert_close(got, np.mean(terms), xp=xp, shape=(), rtol=1e-12)

    def test_unbiased_mean_matches_closed_form(self, xp, asarray):
        rng = np.random.default_rng(12)
        mu2, cov2 = np.array([0.6, 0.0]), np.diag([0.5, 2.0])
        reps, n, h = 400, 64, 1.0
        draws = np.array(
            [
                float(
                    to_numpy(
                        mmd2_linear(
                            asarray(rng.normal(size=(n, 2))),
                            asarray(mu2 + rng.normal(size=(n, 2)) @ np.sqrt(cov2)),
                            bandwidth=h,
                        )
                    )
                )
                for _ in range(reps)
            ]
        )
        exact = gaussian_mmd2(np.zeros(2), np.eye(2), mu2, cov2, h)
        se = draws.std(ddof=1) / np.sqrt(reps)
        assert abs(draws.mean() - exact) < 4 * se, (draws.mean(), exact, se)

    @pytest.mark.parametrize(
        ("kwargs", "shapes", "match"),
        [
            pytest.param({}, ((6, 2), (4, 2)), "same number of samples", id="n != m"),
            pytest.param({}, ((1, 2), (1, 2)), "at least 2", id="one sample"),
            pytest.param({"bandwidth": "median"}, ((6, 2), (6, 2)), "median", id="median"),
            pytest.param(
                {"kernel": "laplace"}, ((6, 2), (6, 2)), "`kernel` must be one of", id="kernel"
            ),
        ],
    )
    def test_bad_input(self, xp, asarray, kwargs, shapes, match):
        with pytest.raises(ValueError, match=match):
            mmd2_linear(asarray(np.ones(shapes[0])), asarray(np.ones(shapes[1])), **kwargs)


class TestMedianDegenerate:
    """``bandwidth="median"`` on samples whose pairwise distances are all zero."""

    def test_zero_median_raises(self, xp, asarray):
        x = asarray(np.ones((5, 3)))
        with pytest.raises(ValueError, match="zero bandwidth"):
            mmd2(x, asarray(np.ones((4, 3))), bandwidth="median")

    @pytest.mark.parametrize("kernel", ["rbf", "imq"])
    def test_half_the_pairs_coincide(self, xp, asarray, kernel):
        # 4 equal points and 1 other: 6 of the 10 pairs are at distance 0, so the
        # median is 0 although not all distances are.
        x, y = np.zeros((4, 2)), np.array([[1.0, 2.0]])
        with pytest.raises(ValueError, match="zero bandwidth"):
            mmd2(asarray(x), asarray(y), kernel=kernel, bandwidth="median", unbiased=False)

    def test_gaussian_prior_zero_median_raises(self, xp, asarray):
        with pytest.raises(ValueError, match="zero bandwidth"):
            mmd2_gaussian_prior(asarray(np.full((6, 2), 0.3)), bandwidth="median")

    def test_gaussian_prior_median_of_one_point(self, xp, asarray):
        # One point has no pairs: a clear error rather than an index error.
        x = asarray(np.zeros((1, 2)))
        with pytest.raises(ValueError, match="at least 2 points"):
            mmd2_gaussian_prior(x, bandwidth="median", unbiased=False)

    def test_torch_compile_gives_nan(self, backend, xp):
        # Under tracing the median cannot be read: no error, and NaN (never a
        # finite number) for a zero median; an ordinary sample is unaffected.
        if backend.value != "torch":
            pytest.skip("torch.compile test: torch CPU only")
        import torch

        compiled = torch.compile(lambda a, b: mmd2(a, b, bandwidth="median"), fullgraph=True)
        ones = torch.ones((5, 3), dtype=torch.float64)
        assert torch.isnan(compiled(ones, ones))
        gen = torch.Generator().manual_seed(0)
        x, y = torch.randn(2, 6, 3, generator=gen, dtype=torch.float64)
        torch.testing.assert_close(compiled(x, y), mmd2(x, y, bandwidth="median"))

    def test_jax_jit_gives_nan(self, backend, xp):
        if backend.value != "jax":
            pytest.skip("jax.jit test: jax only")
        import jax

        jitted = jax.jit(lambda a, b: mmd2(a, b, kernel="imq", bandwidth="median"))
        ones = xp.ones((5, 3), dtype=xp.float64)
        assert bool(xp.isnan(jitted(ones, ones)))
        x = xp.asarray(np.random.default_rng(0).normal(size=(6, 3)))
        expected = to_numpy(mmd2(x, x + 0.5, kernel="imq", bandwidth="median"))
        assert_close(jitted(x, x + 0.5), expected, xp=xp, rtol=1e-12)

    def test_nan_in_gives_nan_out(self, xp, asarray):
        x = np.ones((5, 3))
        x[0, 0] = np.nan
        out = mmd2(asarray(x), asarray(np.zeros((4, 3))), bandwidth="median")
        assert np.isnan(float(to_numpy(out)))


class TestInfoVAEMapping:
    """The documented InfoVAE mapping against a port of the authors' ``compute_kernel``."""

    @staticmethod
    def infovae_kernel(x, y):
        # exp(-mean over dimensions of the squared difference / dim), as in
        # ShengjiaZhao/InfoVAE's compute_kernel (written here from its formula).
        dim = x.shape[1]
        diff = x[:, None, :] - y[None, :, :]
        return np.exp(-np.mean(diff**2, axis=2) / dim)

    @pytest.mark.parametrize("dim", [2, 8, 32])
    def test_bandwidth_d_over_sqrt2(self, dim):
        rng = np.random.default_rng(dim)
        x, y = rng.normal(size=(7, dim)), rng.normal(size=(5, dim))
        expected = self.infovae_kernel(x, y)
        np.testing.assert_allclose(rbf_kernel(x, y, dim / np.sqrt(2)), expected, rtol=1e-12)
        # the mapping the docs used to give is a different kernel
        assert not np.allclose(rbf_kernel(x, y, np.sqrt(dim / 2)), expected, rtol=1e-3)
