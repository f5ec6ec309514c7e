"""Benchmarks run as ``python -m mpitrain bench ...``; each module exposes ``add_parser`` and ``run``."""
