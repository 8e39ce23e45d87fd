"""Benchmarks: figures measured against their physical limits."""
