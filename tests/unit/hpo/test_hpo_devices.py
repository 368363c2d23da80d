"""Partitioning the visible devices between local HPO workers (two levels of parallelism)."""

from __future__ import annotations

import pytest

from mlpfctl.errors import ConfigError
from mlpfctl.hpo.driver import device_slices


def test_worker_i_gets_devices_i_times_k() -> None:
    env = {"CUDA_VISIBLE_DEVICES": "0,1,2,3,4,5,6,7"}
    assert device_slices(4, 2, env) == [
        {"CUDA_VISIBLE_DEVICES": "0,1"},
        {"CUDA_VISIBLE_DEVICES": "2,3"},
        {"CUDA_VISIBLE_DEVICES": "4,5"},
        {"CUDA_VISIBLE_DEVICES": "6,7"},
    ]


def test_the_backend_variable_is_kept_and_ids_are_not_renumbered() -> None:
    env = {"HIP_VISIBLE_DEVICES": "4,5,6,7"}
    assert device_slices(2, 1, env) == [{"HIP_VISIBLE_DEVICES": "4"}, {"HIP_VISIBLE_DEVICES": "5"}]


def test_cpu_only_pins_nothing() -> None:
    assert device_slices(3, 2, {"MLPFCTL_HPO_NO_DEVICE_PROBE": "1"}) == [{}, {}, {}]


def test_too_few_devices_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        device_slices(3, 2, {"CUDA_VISIBLE_DEVICES": "0,1,2,3"})
    assert "need 6 devices, 4 visible" in info.value.message
