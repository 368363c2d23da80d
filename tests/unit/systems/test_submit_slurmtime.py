import pytest

from mlpfctl.errors import UsageError
from mlpfctl.systems.slurmtime import format_time, parse_time


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 5400),
        ("05:30", 330),
        ("04:00:00", 14400),
        ("2-00:00:00", 172800),
        ("1-12", 129600),
        ("1-00:30", 88200),
        (" 10 ", 600),
    ],
)
def test_parse_every_sbatch_form(text: str, seconds: int) -> None:
    assert parse_time(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "1:2:3:4", "0", "-5", "1.5h"])
def test_bad_times_are_usage_errors_with_the_forms(text: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_time(text)
    assert "HH:MM:SS" in (info.value.hint or "")


def test_unlimited_only_where_allowed() -> None:
    assert parse_time("UNLIMITED", allow_unlimited=True) is None
    assert parse_time("infinite", allow_unlimited=True) is None
    with pytest.raises(UsageError):
        parse_time("UNLIMITED")


@pytest.mark.parametrize(
    ("seconds", "text"), [(59, "00:00:59"), (14400, "04:00:00"), (172800, "2-00:00:00"), (None, "UNLIMITED")]
)
def test_format_round_trips(seconds: int | None, text: str) -> None:
    assert format_time(seconds) == text
    if seconds is not None:
        assert parse_time(text) == seconds
