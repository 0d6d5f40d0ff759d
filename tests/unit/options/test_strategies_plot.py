"""Payoff diagrams render to PNG without a display."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from amcp.options.strategies import assemble
from amcp.options.strategies.plot import render_payoff

AS_OF = datetime(2024, 3, 1, 10, 0, tzinfo=ZoneInfo("America/New_York"))
EXPIRY = date(2024, 4, 19)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_iron_condor_renders_a_png_to_bytes_and_to_a_file(tmp_path: Path) -> None:
    condor = assemble(
        "short_iron_condor",
        underlying="XYZ",
        as_of=AS_OF,
        spot=100.0,
        strikes={"K1": 90, "K2": 95, "K3": 105, "K4": 110},
        premiums=(0.5, 1.5, 1.5, 0.5),
        near_expiry=EXPIRY,
        vol=0.25,
    )
    target = tmp_path / "condor.png"
    data = render_payoff(condor, target)
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 10_000  # an 800×500 chart with two curves, not an empty canvas
    assert target.read_bytes() == data


def test_calendar_renders_without_leg_vols_when_a_vol_is_given() -> None:
    calendar = assemble(
        "long_put_calendar",
        underlying="XYZ",
        as_of=AS_OF,
        spot=100.0,
        strikes={"K1": 100},
        premiums=(1.8, 4.0),
        near_expiry=EXPIRY,
        far_expiry=EXPIRY + timedelta(days=28),
    )
    data = render_payoff(calendar, vol=0.2, size_in=(4.0, 3.0), dpi=80)
    assert data.startswith(PNG_SIGNATURE) and len(data) > 5_000
