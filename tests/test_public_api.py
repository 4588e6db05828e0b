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


_SUBPACKAGES = (
    "vaemath._gaussian",
    "vaemath._discrete",
    "vaemath._estimators",
    "vaemath._metrics",
    "vaemath._mmd",
)


def _modules(package_name):
    import importlib
    import pkgutil

    package = importlib.import_module(package_name)
    if not hasattr(package, "__path__"):  # still a flat module
        return []
    names = [package_name] + [
        f"{package_name}.{m.name}" for m in pkgutil.iter_modules(package.__path__)
    ]
    return [importlib.import_module(n) for n in names]


def test_subpackage_all_lists_exist():
    for package_name in _SUBPACKAGES:
        for module in _modules(package_name):
            names = getattr(module, "__all__", None)
            assert names is not None, f"{module.__name__} has no __all__"
            assert len(set(names)) == len(names), module.__name__
            for name in names:
                assert hasattr(module, name), f"{module.__name__}.__all__ names missing {name}"
                assert not name.startswith("_"), f"{module.__name__}.__all__ has private {name}"


def test_no_private_name_crosses_a_module():
    """``from .x import _y`` is how private names leak: none in the subpackages."""
    import ast

    for package_name in _SUBPACKAGES:
        for module in _modules(package_name):
            tree = ast.parse(inspect.getsource(module))
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module is not None:
                    for alias in node.names:
                        assert not alias.name.startswith("_") or alias.name == "__future__", (
                            f"{module.__name__} imports private {alias.name} from {node.module}"
                        )


def test_assert_close_checks_the_device():
    import numpy as np
    import pytest

    from vaemath._lib._compat import array_namespace
    from vaemath._lib._testing import assert_close

    x = np.zeros(2)
    xp = array_namespace(x)
    assert_close(x, np.zeros(2), xp=xp, device="cpu")
    with pytest.raises(AssertionError, match="device"):
        assert_close(x, np.zeros(2), xp=xp, device="cuda")


def test_no_module_exceeds_500_lines():
    """The renovation's size rule: every module of the package is at most 500 lines."""
    from pathlib import Path

    import vaemath

    root = Path(vaemath.__file__).parent
    sizes = {
        str(p.relative_to(root)): len(p.read_text(encoding="utf-8").splitlines())
        for p in root.rglob("*.py")
    }
    assert sizes, "no modules found"
    too_long = {name: n for name, n in sizes.items() if n > 500}
    assert not too_long, f"modules over 500 lines: {too_long}"
