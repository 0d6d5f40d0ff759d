"""The 54 values published in Haug (1998), "The Complete Guide to Option Pricing Formulas".

Each row of the shared reference file is checked within its own ``tol`` (1e-4: the book prints
four decimals). Kinds beyond prices and the greeks of ``bsm_greeks``: ``theta_per_day``
(theta over 365 days) and ``elasticity`` (``Δ·S/V``, the option's leverage).
"""

from __future__ import annotations

import csv

import pytest

from amcp.options.black_scholes import bsm_greeks, bsm_price, per_day
from tests.conftest import SHARED_DATA, require

HAUG = SHARED_DATA / "reference" / "haug_bsm_values.csv"


def _rows() -> list[dict[str, str]]:
    require(HAUG.is_file(), f"the shared reference file {HAUG} is not present")
    with HAUG.open() as handle:
        return list(csv.DictReader(handle))


def _computed(row: dict[str, str]) -> float:
    args = [float(row[key]) for key in ("spot", "strike", "t", "r", "q", "vol")]
    is_call = {"call": True, "put": False}[row["type"]]
    kind = row["kind"]
    if kind == "value":
        return float(bsm_price(*args, is_call))
    greeks = bsm_greeks(*args, is_call)
    if kind == "theta_per_day":
        return float(per_day(greeks["theta"]))
    if kind == "elasticity":
        return float(greeks["delta"] * args[0] / bsm_price(*args, is_call))
    return float(greeks[kind])


def test_the_file_holds_the_54_published_values_of_every_kind_we_check() -> None:
    rows = _rows()
    assert len(rows) == 54
    kinds = {row["kind"] for row in rows}
    greeks = {"delta", "gamma", "vega", "theta", "theta_per_day", "rho", "dividend_rho", "elasticity"}
    assert kinds == {"value"} | greeks


@pytest.mark.parametrize("index", range(54))
def test_published_value_is_reproduced_within_its_tolerance(index: int) -> None:
    rows = _rows()
    require(index < len(rows), f"{HAUG} has {len(rows)} rows, fewer than 54")
    row = rows[index]
    assert abs(_computed(row) - float(row["expected"])) <= float(row["tol"]), row
