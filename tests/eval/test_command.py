"""``crossrank eval`` end to end through typer's CliRunner, on the toy dataset with the tiny random model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from crossrank.cli.app import app
from crossrank.eval.trec import read_trec_run
from crossrank.testing import build_random_reranker

runner = CliRunner()
METRICS = "ndcg@10,mrr@10,recall@100"


def invoke(*args: str) -> object:
    result = runner.invoke(app, ["eval", *args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result


@pytest.fixture(scope="module")
def second_model_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer_for_tests) -> Path:  # type: ignore[no-untyped-def]
    return build_random_reranker(tmp_path_factory.mktemp("second") / "second", seed=5, tokenizer=tokenizer_for_tests)


@pytest.mark.slow  # a full eval over the toy set, a chart drawn
def test_eval_writes_a_report_runs_and_a_chart(toy_dir: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = invoke(str(toy_dir), "--model", str(tiny_model_dir), "--device", "cpu", "--top-k", "4",
                    "--metrics", METRICS, "--output", str(out))
    report = json.loads((out / "report.json").read_text())
    assert report["metrics"] == METRICS.split(",")
    assert report["dataset"]["queries"] == 3 and report["top_k"] == 4
    assert report["first_stage"]["name"] == "bm25"
    [entry] = report["rerankers"]
    assert entry["model"] == str(tiny_model_dir)
    assert entry["timings"]["scored"] == entry["timings"]["pairs"] > 0
    for m in report["metrics"]:
        c = entry["metrics"][m]
        assert c["delta"] == pytest.approx(c["reranked"] - c["baseline"])
        assert c["baseline"] == pytest.approx(report["first_stage"]["metrics"][m])
        assert c["wins"] + c["losses"] + c["ties"] == 3
        assert 0.0 <= c["p_value"] <= 1.0
    # Reranking reorders the same candidates: recall at a depth past top-k cannot move.
    assert entry["metrics"]["recall@100"]["delta"] == 0.0
    first = read_trec_run(out / "first-stage.trec")
    reranked = read_trec_run(out / entry["run_file"])
    assert {q: set(d) for q, d in first.items()} == {q: set(d) for q, d in reranked.items()}
    assert all(len(d) <= 4 for d in first.values())
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "ndcg@10" in result.output  # type: ignore[attr-defined]

    # Run again: every pair comes from the cache.
    invoke(str(toy_dir), "--model", str(tiny_model_dir), "--device", "cpu", "--top-k", "4", "--output", str(out))
    again = json.loads((out / "report.json").read_text())["rerankers"][0]["timings"]
    assert again["scored"] == 0 and again["cached"] == entry["timings"]["pairs"]


@pytest.mark.slow  # two models over the toy set
def test_compare_puts_several_models_in_one_report(toy_dir: Path, tiny_model_dir: Path, second_model_dir: Path,
                                                   tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    invoke(str(toy_dir), "--compare", str(tiny_model_dir), str(second_model_dir), "--device", "cpu",
           "--top-k", "3", "--metrics", "ndcg@10", "--output", str(out))
    report = json.loads((out / "report.json").read_text())
    assert [r["model"] for r in report["rerankers"]] == [str(tiny_model_dir), str(second_model_dir)]
    assert len({r["run_file"] for r in report["rerankers"]}) == 2
    assert all((out / r["run_file"]).is_file() for r in report["rerankers"])


@pytest.mark.slow  # one model in two dtypes over the toy set
def test_compare_dtype_reranks_one_model_in_another_dtype(toy_dir: Path, tiny_model_dir: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from crossrank.model import devices

    monkeypatch.setattr(devices, "cpu_flags", lambda: frozenset(("avx512_vnni",)))
    out = tmp_path / "dtypes"
    invoke(str(toy_dir), "--model", str(tiny_model_dir), "--device", "cpu", "--dtype", "fp32",
           "--compare-dtype", "int8", "--top-k", "3", "--metrics", "ndcg@10", "--output", str(out))
    report = json.loads((out / "report.json").read_text())
    model = str(tiny_model_dir)
    assert [r["model"] for r in report["rerankers"]] == [f"{model} [fp32]", f"{model} [int8]"]
    assert [r["settings"]["dtype"] for r in report["rerankers"]] == ["fp32", "int8"]
    # Each dtype scored every pair itself: the score cache keys on the dtype.
    assert all(r["timings"]["scored"] == r["timings"]["pairs"] > 0 for r in report["rerankers"])
    assert len({r["run_file"] for r in report["rerankers"]}) == 2


def test_compare_dtype_unknown_refused(toy_dir: Path, tiny_model_dir: Path) -> None:
    result = runner.invoke(app, ["eval", str(toy_dir), "--model", str(tiny_model_dir), "--compare-dtype", "int4"])
    assert result.exit_code == 1
    assert "--compare-dtype 'int4': use one of auto, fp32, fp16, bf16, int8" in result.output


def test_options_read_crossrank_environment_variables(toy_dir: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "env"
    result = runner.invoke(app, ["eval", str(toy_dir)], env={
        "CROSSRANK_MODEL": str(tiny_model_dir), "CROSSRANK_DEVICE": "cpu", "CROSSRANK_TOP_K": "2",
        "CROSSRANK_METRICS": "mrr@10", "CROSSRANK_OUTPUT": str(out)})
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["top_k"] == 2 and report["metrics"] == ["mrr@10"]


def test_unknown_dataset_fails_with_where_it_looked(tmp_path: Path, tiny_model_dir: Path) -> None:
    result = runner.invoke(app, ["eval", "no-such-set", "--data-dir", str(tmp_path / "cache"), "--model",
                                 str(tiny_model_dir)],
                           env={"CROSSRANK_BEIR_URL": tmp_path.as_uri() + "/{name}.zip"})
    assert result.exit_code != 0
    assert "no-such-set" in result.output and "cache" in result.output


def test_extra_models_need_compare(toy_dir: Path) -> None:
    result = runner.invoke(app, ["eval", str(toy_dir), "model-a"])
    assert result.exit_code != 0 and "--compare" in result.output


def failed(result: Any) -> str:
    """The one error line of a failed run (no traceback)."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    return str(line)


def test_a_missing_model_is_refused_before_the_first_stage(toy_dir: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from crossrank.eval import first_stage

    monkeypatch.setattr(first_stage, "bm25_run", lambda *a, **k: pytest.fail("BM25 ran before the model was found"))
    out = tmp_path / "out"
    line = failed(runner.invoke(app, ["eval", str(toy_dir), "--model", str(tmp_path / "no-model"), "--output",
                                      str(out)]))
    assert "no-model does not exist" in line
    assert not (out / "scores.sqlite").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--first-stage", "bm52"], "--first-stage must be 'bm25', 'dense:MODEL' or a TREC run file; 'bm52'"),
    (["--first-stage", "runs/missing.trec"], "'runs/missing.trec' is none of them"),
    (["--metrics", "ndgc@10"], "unknown metric 'ndgc@10'"),
])
def test_mistakes_are_one_line_before_any_work(toy_dir: Path, tiny_model_dir: Path, tmp_path: Path,
                                               args: list[str], message: str) -> None:
    result = runner.invoke(app, ["eval", str(toy_dir), "--model", str(tiny_model_dir), "--output",
                                 str(tmp_path / "o"), *args])
    assert message in failed(result)


def test_an_output_that_is_a_file_is_refused(toy_dir: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "taken"
    path.write_text("x")
    assert "is a file" in failed(runner.invoke(app, ["eval", str(toy_dir), "--model", str(tiny_model_dir),
                                                     "--output", str(path)]))


@pytest.mark.parametrize(("missing", "first", "hint"), [
    ("ranx", "bm25", "pip install 'crossrank[eval]'"),
    ("sentence_transformers", "dense:some/model", "pip install sentence-transformers"),
])
def test_a_missing_extra_names_what_to_install(toy_dir: Path, tiny_model_dir: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch, missing: str, first: str,
                                               hint: str) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == missing else real(name, *a))
    result = runner.invoke(app, ["eval", str(toy_dir), "--model", str(tiny_model_dir), "--first-stage", first,
                                 "--output", str(tmp_path / "o")])
    assert hint in failed(result)


def test_no_debug_lines_a_note_on_shallow_metrics_and_the_model_by_its_name(toy_dir: Path, tiny_model_dir: Path,
                                                                          tmp_path: Path) -> None:
    result = runner.invoke(app, ["eval", str(toy_dir), "--model", str(tiny_model_dir), "--device", "cpu",
                                 "--top-k", "10", "--metrics", "ndcg@10,recall@100", "--output", str(tmp_path / "o")],
                           env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "Building index" not in result.output and "DEBUG" not in result.output
    assert "note: recall@100 is measured on the top 10 candidates" in " ".join(result.stderr.split())
    assert "note: ndcg@10" not in result.output
    assert tiny_model_dir.name in result.stdout and "…" not in result.stdout
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["metrics_past_top_k"] == ["recall@100"]
