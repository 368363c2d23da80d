"""File storages are checked before anything opens them; storage errors hide only the password."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlpfctl.errors import ConfigError, MlpfctlError
from mlpfctl.hpo.storage import _scrub, check_location, open_storage, parse_url


def test_a_new_study_needs_an_existing_directory(tmp_path: Path) -> None:
    spec = parse_url(f"sqlite:///{tmp_path / 'missing' / 'x.db'}")
    with pytest.raises(ConfigError, match="does not exist"):
        check_location(spec, existing=False)
    check_location(spec, existing=False, create_parent=True)  # the default location may be made
    check_location(parse_url(f"journal://{tmp_path / 'j.log'}"), existing=False)
    assert list(tmp_path.iterdir()) == []  # checks create nothing


def test_joining_a_study_needs_its_file(tmp_path: Path) -> None:
    for url in (f"journal://{tmp_path / 'j.log'}", f"sqlite:///{tmp_path / 'x.db'}"):
        with pytest.raises(ConfigError, match="does not exist"):
            check_location(parse_url(url), existing=True)
    assert list(tmp_path.iterdir()) == []


def test_wrong_kinds_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        check_location(parse_url(f"sqlite:///{tmp_path}"), existing=False)
    text = tmp_path / "notes.db"
    text.write_text("not a database")
    with pytest.raises(ConfigError, match="not an SQLite database"):
        check_location(parse_url(f"sqlite:///{text}"), existing=True)


def test_sqlite_errors_are_shown_not_masked(tmp_path: Path) -> None:
    locked = tmp_path / "dir.db"
    locked.mkdir()
    (locked / "x").write_text("")
    with pytest.raises(MlpfctlError) as info:  # opening a directory as a database
        open_storage(parse_url(f"sqlite:///{locked}"), heartbeat_interval=1, grace_period=2, max_retry=0)
    assert "***" not in info.value.message and "OperationalError" in info.value.message
    assert info.value.exit_code == 2


def test_scrub_hides_only_passwords() -> None:
    url = "postgresql+psycopg://mlpf:s3cr3t@db:5432/hpo"
    text = 'connection to "db" failed: password authentication failed for user "mlpf" (s3cr3t)\n'
    assert (
        _scrub(text, url) == 'connection to "db" failed: password authentication failed for user "mlpf" (***)'
    )
    assert _scrub("see postgresql://a:b@c/d", "sqlite:///x.db") == "see postgresql://a:***@c/d"
    message = "(sqlite3.OperationalError) unable to open database file (Background on this error at: x)"
    assert _scrub(message, "sqlite:///x.db") == "(sqlite3.OperationalError) unable to open database file"
