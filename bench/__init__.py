"""Benchmarks: each compares side by side in one run and reports ratios (``make bench``)."""
