"""Scaling benchmarks: timing, records, scaling runs, reports and scaling-law fits."""
