"""Shared test helpers: fixture paths and the shared-data skip."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
FSDD_FIXTURES = FIXTURES / "fsdd"
ENGLISH_FIXTURES = FIXTURES / "english"  # three native English clips (BSD-2 / public domain)
SHARED_DATA = ROOT.parent / "shared" / "data"


def shared_data(sub: str = "") -> Path:
    """Path inside ../shared/data, or skip the test when it is absent (as on a user's machine)."""
    path = SHARED_DATA / sub
    if not path.exists():
        pytest.skip(f"{path} is not available")
    return path


@pytest.fixture(scope="session")
def fsdd_dir() -> Path:
    return FSDD_FIXTURES
