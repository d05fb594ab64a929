"""``crossrank batch`` on the command line (local path), and that the CLI needs no Ray to start."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from crossrank import Reranker
from crossrank.batch.files import read_output
from crossrank.cli.app import app

SRC = Path(__file__).resolve().parents[2] / "src"


def test_batch_command_scores_and_resumes(tiny_model_dir: Path, tiny_reranker: Reranker, grouped_jsonl: Path,
                                          tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["batch", str(grouped_jsonl), str(tmp_path / "out"), "--model", str(tiny_model_dir), "--device", "cpu",
            "--part-rows", "10"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    out = read_output(tmp_path / "out")
    assert set(out.column_names) >= {"qid", "query", "passage", "score", "raw_score", "rank"}
    assert all(0.0 <= s <= 1.0 for s in out.column("score").to_pylist())
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and read_output(tmp_path / "out").equals(out)
    bad = runner.invoke(app, ["batch", str(tmp_path / "missing.parquet"), str(tmp_path / "o2"), "--model",
                              str(tiny_model_dir), "--device", "cpu"])
    assert bad.exit_code == 1 and "does not exist" in bad.output


def test_cli_and_ray_modules_import_without_ray() -> None:
    code = ("import sys, crossrank.cli.app, crossrank.ray.serve, crossrank.batch.ray_job, crossrank.runtime.processes; "
            "assert 'ray' not in sys.modules, 'ray imported at module level'")
    subprocess.run([sys.executable, "-c", code], check=True, env={"PYTHONPATH": str(SRC)})
