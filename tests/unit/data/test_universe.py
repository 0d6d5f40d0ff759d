"""Tests for amcp.data.universe: point-in-time membership from intervals and the shared CSV."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from amcp.data.schemas import UNIVERSE_SCHEMA
from amcp.data.universe import PointInTimeUniverse, load_membership_csv
from amcp.errors import DataError
from tests.conftest import SHARED_DATA, require


@pytest.fixture(scope="module")
def sp500() -> PointInTimeUniverse:
    path = SHARED_DATA / "sp500_membership.csv"
    require(path.is_file(), f"the shared membership file {path} is not present")
    return load_membership_csv(path, "sp500")


def test_sp500_has_about_500_members_on_any_date(sp500: PointInTimeUniverse) -> None:
    for day in ("1999-01-04", "2005-06-01", "2010-01-04", "2017-06-19", "2024-09-23"):
        assert 490 <= len(sp500.members(day)) <= 510, day


def test_index_change_swaps_members_on_its_effective_date(sp500: PointInTimeUniverse) -> None:
    # 2024-09-23: PLTR, DELL and ERIE replaced AAL, BIO and ETSY before the open.
    before = set(sp500.members(date(2024, 9, 20)))
    after = set(sp500.members(date(2024, 9, 23)))

    assert {"AAL", "BIO", "ETSY"} <= before
    assert not {"PLTR", "ERIE"} & before
    assert {"PLTR", "DELL", "ERIE"} <= after
    assert not {"AAL", "BIO", "ETSY"} & after
    assert len(before) == len(after)


def test_mask_agrees_with_members_on_every_date(sp500: PointInTimeUniverse) -> None:
    dates = np.array(["2024-09-23", "1999-01-04", "2017-06-19", "2017-06-20", "2008-09-15"], dtype="datetime64[D]")
    symbols = sp500.symbols()

    mask = sp500.mask(dates, symbols)

    assert mask.shape == (dates.size, len(symbols))
    for t, day in enumerate(dates):
        expected = set(sp500.members(day))
        assert {s for s, m in zip(symbols, mask[t], strict=True) if m} == expected


def test_mask_column_of_a_symbol_never_in_the_universe_is_false(sp500: PointInTimeUniverse) -> None:
    mask = sp500.mask(np.array(["2024-09-23"], dtype="datetime64[D]"), ["AAPL", "NOT_A_TICKER"])

    assert mask.tolist() == [[True, False]]


def test_overlapping_and_touching_intervals_are_merged() -> None:
    universe = PointInTimeUniverse.from_intervals(
        "u",
        [
            ("AAA", "2020-01-01", "2020-01-10"),
            ("AAA", "2020-01-05", "2020-01-20"),  # overlaps the first
            ("AAA", "2020-01-21", "2020-01-31"),  # touches the merged one
            ("AAA", "2020-03-01", None),  # separate, still a member
            ("BBB", "2020-02-01", "2020-02-01"),
        ],
    )

    table = universe.to_table()

    assert table.schema == UNIVERSE_SCHEMA
    assert table.column("symbol").to_pylist() == ["AAA", "AAA", "BBB"]
    assert table.column("start_date").to_pylist() == [date(2020, 1, 1), date(2020, 3, 1), date(2020, 2, 1)]
    assert table.column("end_date").to_pylist() == [date(2020, 1, 31), None, date(2020, 2, 1)]
    assert universe.members("2020-02-15") == []
    assert universe.members("2020-02-01") == ["BBB"]
    assert universe.members("2030-01-01") == ["AAA"]


def test_table_round_trip_keeps_membership() -> None:
    universe = PointInTimeUniverse.from_intervals("u", [("AAA", "2020-01-01", None), ("BBB", "2020-01-05", "2020-01-09")])
    dates = np.arange(np.datetime64("2019-12-30"), np.datetime64("2020-01-15"))

    again = PointInTimeUniverse.from_table(universe.to_table())

    np.testing.assert_array_equal(again.mask(dates, ["BBB", "AAA"]), universe.mask(dates, ["BBB", "AAA"]))
    assert again.name == "u"


def test_from_table_needs_a_choice_between_several_universes() -> None:
    table = pa.Table.from_pydict(
        {
            "universe": ["a", "b"],
            "symbol": ["X", "Y"],
            "start_date": [date(2020, 1, 1)] * 2,
            "end_date": [None, None],
        },
        schema=UNIVERSE_SCHEMA,
    )

    with pytest.raises(DataError, match="choose one"):
        PointInTimeUniverse.from_table(table)
    assert PointInTimeUniverse.from_table(table, "b").symbols() == ["Y"]


def test_membership_ending_before_it_starts_is_refused_with_the_row() -> None:
    with pytest.raises(DataError, match=r"BBB membership ends before it starts \(start 2020-02-01, end 2020-01-01\)"):
        PointInTimeUniverse.from_intervals("u", [("AAA", "2020-01-01", None), ("BBB", "2020-02-01", "2020-01-01")])


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "members.csv"
    path.write_text(text)
    return path


def test_csv_with_a_malformed_date_names_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "ticker,start_date,end_date\nAAA,2020-01-01,\nBBB,2020-13-01,2021-01-01\n")

    with pytest.raises(DataError, match=r"line 3: start_date '2020-13-01' is not a YYYY-MM-DD date"):
        load_membership_csv(path, "u")


def test_csv_end_before_start_names_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "ticker,start_date,end_date\nAAA,2020-01-01,\nBBB,2020-05-01,2020-04-01\n")

    with pytest.raises(DataError, match=r"line 3: BBB membership ends before it starts"):
        load_membership_csv(path, "u")


def test_csv_missing_column_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, "ticker,start\nAAA,2020-01-01\n")

    with pytest.raises(DataError, match=r"missing columns \['start_date', 'end_date'\]"):
        load_membership_csv(path, "u")


def test_csv_inclusive_ends_are_kept_when_asked(tmp_path: Path) -> None:
    path = _write(tmp_path, "symbol,start_date,end_date\nAAA,2020-01-01,2020-01-10\n")

    exclusive = load_membership_csv(path, "u")
    inclusive = load_membership_csv(path, "u", end_is_exclusive=False)

    assert exclusive.members("2020-01-10") == []
    assert inclusive.members("2020-01-10") == ["AAA"]


def test_missing_file_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_membership_csv(tmp_path / "nope.csv", "u")
