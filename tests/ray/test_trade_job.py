"""The main job end to end on a short slice: progress, report, journal, one JSON line last."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from pipelines import trade

pytestmark = pytest.mark.ray

ROOT = Path(__file__).resolve().parents[2]


def test_main_job_runs_end_to_end_on_a_short_slice(ray_local, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = yaml.safe_load((ROOT / "configs/paper.yaml").read_text())
    config["data"]["path"] = str(ROOT / config["data"]["path"])
    config["run"]["output_dir"] = str(tmp_path / "runs")
    path = tmp_path / "paper.yaml"
    path.write_text(yaml.safe_dump(config))

    code = trade.main(["--config", str(path), "--max-cycles", "160", "--run-id", "e2e"])

    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0
    summary = json.loads(out[-1])
    assert summary["mode"] == "paper" and summary["cycles"] == 160 and summary["symbols"] >= 30
    assert summary["orders"] > 0 and summary["fills"] > 0
    for key in ("bars", "denials", "final_equity", "total_return", "sharpe", "max_drawdown", "report"):
        assert key in summary
    report = Path(summary["report"])
    assert report.is_file() and report.parent.name == "e2e"
    assert "data:image/png;base64," in report.read_text()
    assert any("final equity" in line for line in out), "the summary table is printed"
    engine = sa.create_engine(summary["journal"])
    with engine.connect() as connection:
        kinds = dict(connection.execute(sa.text("select type, count(*) from journal group by type")).all())
    assert kinds["SubmitOrder"] >= summary["orders"] and kinds["OrderFilled"] == summary["fills"]
