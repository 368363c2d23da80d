"""mlpfctl: train, tune, scale-test and submit MLPF models on HPC machines."""

__version__ = "0.1.0"
