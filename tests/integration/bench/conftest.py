"""Reuse the training tests' generated dataset and tiny-model settings."""

from tests.integration.train.conftest import tiny_sets, ttbar_dir

__all__ = ["tiny_sets", "ttbar_dir"]
