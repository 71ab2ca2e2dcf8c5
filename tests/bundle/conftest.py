"""The project's wheel, built once per test run the way the bundle's artifact builds it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def build_wheel(out_dir: Path) -> Path:
    """``uv build --wheel`` (the artifact's command), kept offline: the build backend comes
    from this virtualenv."""
    result = subprocess.run(
        [sys.executable, "-m", "uv", "build", "--wheel", "--no-build-isolation", "--offline",
         "--python", sys.executable, "--out-dir", str(out_dir), str(ROOT)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = out_dir.glob("*.whl")
    return wheel


@pytest.fixture(scope="session")
def built_wheel(tmp_path_factory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("dist"))
