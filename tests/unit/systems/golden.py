"""Golden-file comparison for rendered job scripts and definition files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

UPDATE = os.environ.get("MLPFCTL_UPDATE_GOLDEN") == "1"


def assert_golden(golden: Path, text: str) -> None:
    """``text`` equals the file ``golden``; MLPFCTL_UPDATE_GOLDEN=1 rewrites it instead, and a
    missing file is written and fails the test (to be checked and committed)."""
    if UPDATE or not golden.exists():
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text)
        if not UPDATE:
            pytest.fail(f"{golden} did not exist and was written; check it and commit it")
    assert text == golden.read_text(), (
        f"{golden} differs from what is rendered now. If the change is intended, regenerate the golden "
        f"files: MLPFCTL_UPDATE_GOLDEN=1 pytest {os.environ.get('PYTEST_CURRENT_TEST', '').split('::')[0]}"
    )
