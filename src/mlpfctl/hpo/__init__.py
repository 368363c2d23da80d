"""Hyperparameter optimisation: search spaces, samplers, schedulers (pruners and ASHA/RASDA),
storages with heartbeats, worker processes, the local driver and reports.

Import cost: optuna is imported lazily inside the functions that need it, so that the CLI's
``--help`` stays fast.
"""
