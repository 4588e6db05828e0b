"""The public namespace: ``__all__`` is sorted, complete and importable."""

from __future__ import annotations

import inspect

import vaemath


def test_all_is_sorted_and_unique():
    assert list(vaemath.__all__) == sorted(set(vaemath.__all__))


def test_all_names_exist_and_are_documented():
    for name in vaemath.__all__:
        obj = getattr(vaemath, name)
        doc = inspect.getdoc(obj) or ""
        assert doc, f"{name} has no docstring"
        if inspect.isfunction(obj):
            assert "Examples" in doc, f"{name} docstring has no Examples section"
            assert ".. math::" in doc, f"{name} docstring has no formula"


def test_every_public_function_is_exported():
    public = {
        name
        for name, obj in vars(vaemath).items()
        if not name.startswith("_") and (inspect.isfunction(obj) or inspect.isclass(obj))
    }
    assert public <= set(vaemath.__all__)


def test_contract_signatures():
    sig = inspect.signature(vaemath.gaussian_kl)
    assert list(sig.parameters) == ["mu", "logvar", "prior_mu", "prior_logvar"]
    assert sig.parameters["prior_mu"].default == 0.0
    assert sig.parameters["prior_logvar"].default == 0.0
    assert list(inspect.signature(vaemath.gaussian_log_density).parameters) == ["z", "mu", "logvar"]
    sig = inspect.signature(vaemath.mvn_kl)
    assert list(sig.parameters) == ["mu", "scale_tril", "prior_mu", "prior_scale_tril"]
    assert sig.parameters["prior_mu"].default is None
