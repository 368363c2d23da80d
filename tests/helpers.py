"""Run the real CLI in a subprocess, the way users do."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path


def run_cli(
    *args: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 600,
    input_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "mlpfctl", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=timeout,
        input=input_text,
        check=False,
    )


def assert_user_error(proc: subprocess.CompletedProcess[str], *fragments: str, code: int = 2) -> None:
    """Exit code 2, one error: line and one hint: line on stderr, no traceback, nothing on stdout."""
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr, proc.stderr
    error_lines = [line for line in lines if line.startswith("error: ")]
    hint_lines = [line for line in lines if line.startswith("hint: ")]
    assert len(error_lines) == 1 and len(hint_lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr, (fragment, proc.stderr)
    assert proc.stdout == "", proc.stdout
