"""Benchmarks: side-by-side timings printed as ratios (never run by the tests)."""
