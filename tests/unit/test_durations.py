from __future__ import annotations

import pytest

from mlpfctl.durations import parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90.0), ("90s", 90.0), ("25m", 1500.0), ("1.5h", 5400.0), ("1h30m", 5400.0), (" 2 M ", 120.0)],
)
def test_durations_people_write(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "5x", "1h30", "0", "0m", "-5m", "1.2.3", "m", "1e5", "inf"])
def test_everything_else_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_a_bad_max_time_is_a_user_error_naming_the_forms() -> None:
    from tests.helpers import assert_user_error, run_cli

    proc = run_cli("train", "--dry-run", "--max-time", "5x")
    assert_user_error(proc, "train.max_time", "5x", "25m")
