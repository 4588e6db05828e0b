"""The engine's paths against a brute-force reference.

The estimators' values are tested in ``test_estimators.py`` against closed forms
and Monte Carlo; here each path of ``_tiles.forward`` / ``_tiles.backward``
(the generic tiles on NumPy and torch, and the fused ``torch.compile``
kernels of ``_compiled.py``) is checked on the inputs that
exercise its special cases: several component chunks and row tiles (padded
last tiles), own / next estimator weights, per-component weights, queries far
from every component (the exact-path fallback), NaN, and the backward pass.
The reference is a float64 ``scipy.special.logsumexp`` over the full
``(M, N, D)`` array, computed independently.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy.special import logsumexp

from vaemath._estimators import _compiled, _tiles
from vaemath._estimators._weights import LogWeights, log_weights
from vaemath._lib._compat import numpy_namespace

torch = pytest.importorskip("torch")
from vaemath._lib._compat import torch_namespace  # noqa: E402

M, N, D = 37, 45, 3


def problem(seed: int = 0, far: int = 0):
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=(N, D))
    logvar = rng.uniform(-3.0, 1.0, size=(N, D))
    z = mu[:M] + np.exp(0.5 * logvar[:M]) * rng.normal(size=(M, D))
    if far:  # queries hundreds of standard deviations from every component
        z[:far] = 40.0 + 10.0 * rng.normal(size=(far, D))
    cw = rng.normal(size=N) * 0.5
    return z, mu, logvar, cw


def brute(z, mu, logvar, weights: LogWeights, cw=None):
    """float64 log q(z_i) and log q(z_id) over the full (M, N, D) array."""
    m, n = z.shape[0], mu.shape[0]
    dens = -0.5 * ((z[:, None, :] - mu[None]) ** 2 * np.exp(-logvar[None]) + logvar[None])
    dens -= 0.5 * math.log(2 * math.pi)
    logw = np.full((m, n), weights.log_other)
    i = np.arange(m)
    if weights.log_next is not None:
        logw[i, (i + 1) % n] = weights.log_next
    if weights.log_own is not None:
        own = i[i < n]
        logw[own, own] = weights.log_own
    if cw is not None:
        logw = logw + cw[None, :]
    lq = logsumexp(dens.sum(-1) + logw, axis=1)
    lqd = logsumexp(dens + logw[:, :, None], axis=1)
    return lq, lqd


WEIGHTS = {
    "uniform": LogWeights(-math.log(N)),
    "mws": log_weights(N, 10 * N, "mws"),
    "mss": log_weights(N, 10 * N, "mss"),
}


@pytest.fixture(scope="module")
def can_compile():
    """Whether torch.compile works here (it needs a C++ compiler); probed once."""
    try:
        return bool(torch.compile(lambda x: x.exp().sum(), fullgraph=True)(torch.ones(3)) > 0)
    except Exception:
        return False


@pytest.fixture(params=["numpy", "numpy compiled", "torch eager", "torch compiled"])
def path(request, monkeypatch, can_compile):
    """Each path, with chunks and tiles small enough to split this problem.

    ``numpy compiled``: NumPy arrays through the fused torch kernels.
    """
    if request.param.endswith("compiled") and not can_compile:
        pytest.skip("torch.compile cannot build kernels on this machine (no C++ compiler?)")
    monkeypatch.setattr(_tiles, "_TILE_ELEMENTS", 256)
    monkeypatch.setattr(_compiled, "_TILE_TERMS", 16 * 16 * D)
    monkeypatch.setattr(_compiled, "_CHUNK", 16)
    monkeypatch.setenv("VAEMATH_COMPILE", "1" if request.param.endswith("compiled") else "0")
    return request.param


def run_forward(path, z, mu, logvar, weights, cw=None, **kw):
    if path.startswith("numpy"):
        xp, conv = numpy_namespace(), np.asarray
    else:
        xp, conv = torch_namespace(), torch.from_numpy
    args = [conv(np.asarray(a, dtype=np.float64)) for a in (z, mu, logvar)]
    col = None if cw is None else conv(np.asarray(cw, dtype=np.float64))
    out = _tiles.forward(*args, weights, xp=xp, column_log_weights=col, **kw)
    return [None if o is None else np.asarray(o) for o in out]


@pytest.mark.parametrize("name", list(WEIGHTS))
@pytest.mark.parametrize("column", [False, True], ids=["", "column weights"])
def test_forward_matches_brute_force(path, name, column):
    z, mu, logvar, cw = problem()
    w = WEIGHTS[name]
    cw = cw if column else None
    lq, lqd, joint = run_forward(path, z, mu, logvar, w, cw, keep_joint=True)
    ref_q, ref_qd = brute(z, mu, logvar, w, cw)
    np.testing.assert_allclose(lq, ref_q, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(lqd, ref_qd, rtol=1e-12, atol=1e-12)
    # the saved joint is J + log w: its row log-sum-exp is log q
    np.testing.assert_allclose(logsumexp(joint, axis=1), ref_q, rtol=1e-12, atol=1e-12)


def test_joint_only_and_marginals_only(path):
    z, mu, logvar, _ = problem(1)
    w = WEIGHTS["mss"]
    ref_q, ref_qd = brute(z, mu, logvar, w)
    lq, lqd, _ = run_forward(path, z, mu, logvar, w, with_marginals=False)
    assert lqd is None
    np.testing.assert_allclose(lq, ref_q, rtol=1e-12, atol=1e-12)
    lq, lqd, _ = run_forward(path, z, mu, logvar, w, with_joint=False)
    assert lq is None
    np.testing.assert_allclose(lqd, ref_qd, rtol=1e-12, atol=1e-12)


def test_far_queries_take_the_exact_path(path):
    """Sums far below the bound (float64: e^-319) are recomputed, not rounded to -inf."""
    z, mu, logvar, _ = problem(2, far=5)
    w = WEIGHTS["mws"]
    lq, lqd, _ = run_forward(path, z, mu, logvar, w)
    ref_q, ref_qd = brute(z, mu, logvar, w)
    assert np.all(np.isfinite(lqd)), "far queries must not underflow"
    assert lqd[:5].min() < -300.0, "the test needs queries beyond the bound margin"
    np.testing.assert_allclose(lqd, ref_qd, rtol=1e-12)
    np.testing.assert_allclose(lq, ref_q, rtol=1e-12)


def test_float32_far_queries(path):
    z, mu, logvar, _ = problem(3)
    z[:4] = 9.0  # e^-40 to e^-60 below the bound: beyond float32's margin of 39
    w = WEIGHTS["uniform"]
    if path.startswith("numpy"):
        args = [np.asarray(a, dtype=np.float32) for a in (z, mu, logvar)]
        xp = numpy_namespace()
    else:
        args = [torch.from_numpy(np.asarray(a, dtype=np.float32)) for a in (z, mu, logvar)]
        xp = torch_namespace()
    _, lqd, _ = _tiles.forward(*args, w, xp=xp)
    _, ref_qd = brute(*(np.asarray(a, dtype=np.float64) for a in args), w)
    np.testing.assert_allclose(np.asarray(lqd), ref_qd, rtol=2e-6, atol=2e-5)


def test_nan_stays_in_its_row(path):
    z, mu, logvar, _ = problem(4)
    z[3, 1] = np.nan
    w = WEIGHTS["uniform"]
    lq, lqd, _ = run_forward(path, z, mu, logvar, w)
    assert np.isnan(lq[3])
    assert np.isnan(lqd[3, 1])
    keep = np.arange(M) != 3
    ref_q, ref_qd = brute(z[keep], mu, logvar, w)
    np.testing.assert_allclose(lq[keep], ref_q, rtol=1e-12)
    np.testing.assert_allclose(lqd[keep], ref_qd, rtol=1e-12)


@pytest.mark.parametrize("name", ["uniform", "mss"])
@pytest.mark.parametrize("marginals", [True, False], ids=["marginals", "joint only"])
def test_backward_matches_autograd_of_brute_force(path, name, marginals):
    if path.startswith("numpy"):
        pytest.skip("the backward pass serves torch autograd")
    z, mu, logvar, cw = problem(5)
    w = WEIGHTS[name]
    xp = torch_namespace()
    t = [torch.from_numpy(a) for a in (z, mu, logvar, cw)]
    lq, lqd, joint = _tiles.forward(
        *t[:3], w, xp=xp, keep_joint=True, with_marginals=marginals, column_log_weights=t[3]
    )
    gen = torch.Generator().manual_seed(0)
    gq = torch.randn(M, generator=gen, dtype=torch.float64)
    gqd = torch.randn(M, D, generator=gen, dtype=torch.float64)
    grads = _tiles.backward(
        *t[:3], weights=w, log_q=lq, log_qd=lqd, joint=joint, grad_q=gq,
        grad_qd=gqd if marginals else None, xp=xp, column_log_weights=t[3],
    )  # fmt: skip
    # autograd of the dense formula, written independently
    leaves = [x.clone().requires_grad_(True) for x in t]
    zz, mm, vv, cc = leaves
    dens = -0.5 * ((zz[:, None] - mm[None]) ** 2 * torch.exp(-vv[None]) + vv[None])
    dens = dens - 0.5 * math.log(2 * math.pi)
    logw = torch.full((M, N), w.log_other, dtype=torch.float64)
    i = torch.arange(M)
    if w.log_next is not None:
        logw[i, (i + 1) % N] = w.log_next
    if w.log_own is not None:
        logw[i, i] = w.log_own
    logw = logw + cc[None, :]
    out = (torch.logsumexp(dens.sum(-1) + logw, 1) * gq).sum()
    if marginals:
        out = out + (torch.logsumexp(dens + logw[:, :, None], 1) * gqd).sum()
    ref = torch.autograd.grad(out, leaves)
    for got, want, label in zip(grads, ref, ("z", "mu", "logvar", "log c"), strict=True):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-10, atol=1e-12, err_msg=label)


def test_compile_failure_falls_back_with_a_warning(monkeypatch):
    """A compiler that fails gives one RuntimeWarning and the eager value."""
    z, mu, logvar, _ = problem(7)
    w = WEIGHTS["uniform"]
    monkeypatch.setenv("VAEMATH_COMPILE", "1")
    monkeypatch.setattr(_compiled, "_FAILED", [])
    monkeypatch.setattr(_compiled, "_KERNELS", {})

    def broken(fn, **kwargs):
        def call(*args):
            msg = "no compiler here"
            raise RuntimeError(msg)

        return call

    monkeypatch.setattr(torch, "compile", broken)
    t = [torch.from_numpy(a) for a in (z, mu, logvar)]
    with pytest.warns(RuntimeWarning, match="torch.compile of the estimator tiles failed"):
        lq, lqd, _ = _tiles.forward(*t, w, xp=torch_namespace())
    ref_q, ref_qd = brute(z, mu, logvar, w)
    np.testing.assert_allclose(lq.numpy(), ref_q, rtol=1e-12)
    np.testing.assert_allclose(lqd.numpy(), ref_qd, rtol=1e-12)
    assert not _compiled.use_compiled(t[0], 10**6, 10**6, 10)  # not tried again


def test_compiled_estimator_gradients_match_eager(monkeypatch, can_compile):
    """Through the public estimator and autograd (saved outputs are non-leaf tensors)."""
    if not can_compile:
        pytest.skip("torch.compile cannot build kernels on this machine")
    import vaemath

    monkeypatch.setattr(_compiled, "_TILE_TERMS", 16 * 16 * D)
    monkeypatch.setattr(_compiled, "_CHUNK", 16)
    gen = torch.Generator().manual_seed(3)
    mu0 = torch.randn(N, D, generator=gen, dtype=torch.float64)
    lv0 = torch.rand(N, D, generator=gen, dtype=torch.float64) - 1.5
    eps = torch.randn(N, D, generator=gen, dtype=torch.float64)
    grads = {}
    for setting in ("0", "1"):
        monkeypatch.setenv("VAEMATH_COMPILE", setting)
        mu, lv = mu0.clone().requires_grad_(), lv0.clone().requires_grad_()
        z = mu + torch.exp(0.5 * lv) * eps
        t = vaemath.elbo_decomposition(z, mu, lv, dataset_size=10 * N, method="mss")
        (t.mutual_information + 5.0 * t.total_correlation + t.dimensionwise_kl).backward()
        grads[setting] = (mu.grad, lv.grad)
    for eager, fused in zip(grads["0"], grads["1"], strict=True):
        np.testing.assert_allclose(fused.numpy(), eager.numpy(), rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("setting", ["0", "1"])
def test_numpy_takes_the_fused_kernels_only_when_asked(monkeypatch, can_compile, setting):
    """NumPy arrays (read-only ones too) reach the torch kernels with ``VAEMATH_COMPILE=1``
    and come back as NumPy arrays; with ``0`` the NumPy tiles run and torch is not called."""
    if setting == "1" and not can_compile:
        pytest.skip("torch.compile cannot build kernels on this machine")
    monkeypatch.setenv("VAEMATH_COMPILE", setting)
    calls = []
    real = _compiled.call_kernel
    monkeypatch.setattr(_compiled, "call_kernel", lambda *a: calls.append(a[0]) or real(*a))
    z, mu, logvar, _ = problem(8)
    args = [np.asarray(a, dtype=np.float32) for a in (z, mu, logvar)]
    for a in args:
        a.flags.writeable = False
    w = WEIGHTS["mss"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lq, lqd, _ = _tiles.forward(*args, w, xp=numpy_namespace())
    assert type(lq) is np.ndarray
    assert type(lqd) is np.ndarray
    assert lq.dtype == lqd.dtype == np.float32
    assert bool(calls) == (setting == "1")
    ref_q, ref_qd = brute(*(np.asarray(a, dtype=np.float64) for a in args), w)
    np.testing.assert_allclose(lq, ref_q, rtol=2e-6, atol=2e-5)
    np.testing.assert_allclose(lqd, ref_qd, rtol=2e-6, atol=2e-5)


def test_numpy_fused_kernels_take_any_layout(monkeypatch, can_compile):
    """Reversed (negative-stride) and strided NumPy inputs reach the torch kernels too
    (torch.from_numpy rejects negative strides: they are copied) and give the NumPy value."""
    if not can_compile:
        pytest.skip("torch.compile cannot build kernels on this machine")
    monkeypatch.setenv("VAEMATH_COMPILE", "1")
    calls = []
    real = _compiled.call_kernel
    monkeypatch.setattr(_compiled, "call_kernel", lambda *a: calls.append(a[0]) or real(*a))
    z, mu, logvar, _ = problem(8)
    plain = [np.asarray(a, dtype=np.float32) for a in (z, mu, logvar)]
    w = WEIGHTS["mss"]
    for layout in (lambda a: a[::-1], lambda a: np.asfortranarray(a)[:, ::-1]):
        args = [layout(a) for a in plain]
        lq, lqd, _ = _tiles.forward(*args, w, xp=numpy_namespace())
        ref_q, ref_qd = brute(*(np.asarray(a, dtype=np.float64) for a in args), w)
        np.testing.assert_allclose(lq, ref_q, rtol=2e-6, atol=2e-5)
        np.testing.assert_allclose(lqd, ref_qd, rtol=2e-6, atol=2e-5)
    assert len(calls) == 2
