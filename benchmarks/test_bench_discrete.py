"""``vaemath.bernoulli_kl`` and ``vaemath.categorical_kl`` against what one would otherwise write.

Each group is one (op, library, mode, shape) and holds these implementations of
the loss ``kl(logits, prior_logits).sum()``:

* ``vaemath``: ``bernoulli_kl(a, b)`` / ``categorical_kl(a, b)`` (the import
  is switched to ``vaemath.bernoulli_kl`` once the names are public);
* ``naive``: sigmoid (softmax), then log: ``p*log(p/q) + (1-p)*log((1-p)/(1-q))``
  / ``sum(softmax(a) * (log_softmax(a) - log_softmax(b)))``;
* ``torch.distributions``: ``kl_divergence(Bernoulli(logits=a), Bernoulli(logits=b))``
  / ``Categorical`` (torch only);
* ``floor``: ``a + b`` (one elementwise op reading both inputs), the
  memory-bound floor no implementation can beat.

Modes: ``forward`` and ``forward+backward`` (inputs ``requires_grad``,
``loss.backward()`` timed with the forward) in float32, and
``forward float64`` (the double-word path). Categorical shapes are
``B x D x K`` with the categories last.
"""

from __future__ import annotations

import numpy as np
import pytest

from vaemath import bernoulli_kl, categorical_kl

torch = pytest.importorskip("torch")

BERNOULLI_SHAPES = [(64, 32), (1024, 64), (4096, 256)]
CATEGORICAL_SHAPES = [(64, 8, 10), (1024, 8, 10), (4096, 16, 32)]


def _label(shape: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in shape)


def _inputs(shape, library, *, grad=False, dtype=np.float32):
    gen = np.random.default_rng(0)
    a = (2 * gen.standard_normal(shape)).astype(dtype)
    b = (2 * gen.standard_normal(shape)).astype(dtype)
    if library == "torch":
        return torch.from_numpy(a).requires_grad_(grad), torch.from_numpy(b).requires_grad_(grad)
    return a, b


# -- the alternatives -------------------------------------------------------------


def _naive_bernoulli_torch(a, b):
    p, q = torch.sigmoid(a), torch.sigmoid(b)
    return p * torch.log(p / q) + (1 - p) * torch.log((1 - p) / (1 - q))


def _naive_bernoulli_numpy(a, b):
    p, q = 1 / (1 + np.exp(-a)), 1 / (1 + np.exp(-b))
    return p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))


def _distributions_bernoulli(a, b):
    from torch.distributions import Bernoulli, kl_divergence

    return kl_divergence(Bernoulli(logits=a), Bernoulli(logits=b))


def _naive_categorical_torch(a, b):
    log_p, log_q = torch.log_softmax(a, -1), torch.log_softmax(b, -1)
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def _naive_categorical_numpy(a, b):
    def log_softmax(x):
        m = x.max(-1, keepdims=True)
        return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))

    log_p, log_q = log_softmax(a), log_softmax(b)
    return (np.exp(log_p) * (log_p - log_q)).sum(-1)


def _distributions_categorical(a, b):
    from torch.distributions import Categorical, kl_divergence

    return kl_divergence(Categorical(logits=a), Categorical(logits=b))


IMPLS = {
    ("bernoulli_kl", "torch"): {
        "vaemath": bernoulli_kl,
        "naive": _naive_bernoulli_torch,
        "torch.distributions": _distributions_bernoulli,
        "floor": torch.add,
    },
    ("bernoulli_kl", "numpy"): {
        "vaemath": bernoulli_kl,
        "naive": _naive_bernoulli_numpy,
        "floor": np.add,
    },
    ("categorical_kl", "torch"): {
        "vaemath": categorical_kl,
        "naive": _naive_categorical_torch,
        "torch.distributions": _distributions_categorical,
        "floor": torch.add,
    },
    ("categorical_kl", "numpy"): {
        "vaemath": categorical_kl,
        "naive": _naive_categorical_numpy,
        "floor": np.add,
    },
}
SHAPES = {"bernoulli_kl": BERNOULLI_SHAPES, "categorical_kl": CATEGORICAL_SHAPES}


def _cases(library: str) -> list:
    return [
        pytest.param(op, impl, shape, id=f"{op}-{impl}-{_label(shape)}")
        for op, shapes in SHAPES.items()
        for impl in IMPLS[op, library]
        for shape in shapes
    ]


def _loss(fn):
    def loss(a, b):
        return fn(a, b).sum()

    return loss


def _forward_backward(loss, a, b):
    def step():
        loss(a, b).backward()
        a.grad = b.grad = None

    return step


@pytest.mark.parametrize(("op", "impl", "shape"), _cases("torch"))
def test_torch_forward(benchmark, tag, op, impl, shape):
    tag(op, "torch", "forward", _label(shape), impl)
    a, b = _inputs(shape, "torch")
    benchmark(_loss(IMPLS[op, "torch"][impl]), a, b)


@pytest.mark.parametrize(("op", "impl", "shape"), _cases("torch"))
def test_torch_forward_backward(benchmark, tag, op, impl, shape):
    tag(op, "torch", "forward+backward", _label(shape), impl)
    a, b = _inputs(shape, "torch", grad=True)
    benchmark(_forward_backward(_loss(IMPLS[op, "torch"][impl]), a, b))


@pytest.mark.parametrize(("op", "impl", "shape"), _cases("torch"))
def test_torch_forward_float64(benchmark, tag, op, impl, shape):
    tag(op, "torch", "forward float64", _label(shape), impl, heavy=shape == SHAPES[op][-1])
    a, b = _inputs(shape, "torch", dtype=np.float64)
    benchmark(_loss(IMPLS[op, "torch"][impl]), a, b)


@pytest.mark.parametrize(("op", "impl", "shape"), _cases("numpy"))
def test_numpy_forward(benchmark, tag, op, impl, shape):
    tag(op, "numpy", "forward", _label(shape), impl)
    a, b = _inputs(shape, "numpy")
    benchmark(_loss(IMPLS[op, "numpy"][impl]), a, b)


@pytest.mark.parametrize("op", list(SHAPES))
def test_alternatives_agree(op):
    """The timed implementations compute the same KL (plain test, not timed)."""
    shape = SHAPES[op][0]
    a, b = _inputs(shape, "torch")
    ours = IMPLS[op, "torch"]["vaemath"](a, b)
    for impl in ("naive", "torch.distributions"):
        torch.testing.assert_close(IMPLS[op, "torch"][impl](a, b), ours, rtol=1e-4, atol=1e-5)
    a_np, b_np = _inputs(shape, "numpy")
    np.testing.assert_allclose(
        IMPLS[op, "numpy"]["naive"](a_np, b_np),
        IMPLS[op, "numpy"]["vaemath"](a_np, b_np),
        rtol=1e-4,
        atol=1e-5,
    )
