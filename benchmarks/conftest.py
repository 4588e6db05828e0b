"""pytest-benchmark configuration shared by the benchmark files.

Run: ``python -m pytest benchmarks --benchmark-only`` (add
``--benchmark-json=out.json`` and read the ratios with
``python benchmarks/ratios.py out.json``). Each group holds the alternatives a
user would otherwise write, so ratios come from one run on one machine.
"""
