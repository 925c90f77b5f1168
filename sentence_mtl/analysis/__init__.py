"""Measuring and comparing: what Task 3, the benchmarks and Task 1's ``--stsb`` report.

``comparison`` (the statistical rule: Welch intervals, sign tests), ``similarity`` (STS Spearman of
any embedding function, cosine checks) and ``zero_shot`` (label names as a classifier).
"""
