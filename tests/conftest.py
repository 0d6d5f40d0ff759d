"""Fixtures shared by every tier: the repo root, the shared real data, PostgreSQL."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(available: bool, reason: str) -> None:
    """Skip with ``reason`` on a developer machine; fail in CI, where nothing may be skipped."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def shared_daily() -> Path:
    path = SHARED_DATA / "us_equities_daily.parquet"
    require(path.is_file(), f"the shared real data file {path} is not present")
    return path


@pytest.fixture(scope="session")
def postgres_url() -> str:
    url = os.environ.get("AMCP_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")
    try:
        import sqlalchemy as sa

        engine = sa.create_engine(url)
        with engine.connect() as connection:
            connection.execute(sa.text("select 1"))
        engine.dispose()
        ok = True
    except Exception:  # noqa: BLE001 - any failure means the service is not reachable
        ok = False
    require(ok, f"PostgreSQL is not reachable at {url}")
    return url
