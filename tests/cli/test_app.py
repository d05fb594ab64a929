"""The command line, through typer's runner and as a real subprocess (`python -m crossrank`)."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from huggingface_hub import constants as hf_constants
from typer.testing import CliRunner, Result

import crossrank
from crossrank import Reranker
from crossrank.cli import app as cli
from crossrank.cli import commands, console
from crossrank.model.devices import dtype_name, resolve_device, resolve_dtype

SRC = Path(crossrank.__file__).resolve().parents[1]
QUERY = "中国的首都是哪里？"
PASSAGES = ["北京是中国的政治中心。", "上海是中国最大的城市。", "首都机场位于北京。",
            "vitamin D and bone pain", "🙂 coffee"]
MODEL_COMMANDS = ("rerank", "demo", "check")

runner = CliRunner()


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No network, no user settings, no real ./models or HF cache."""
    for name in list(os.environ):
        if name.startswith("CROSSRANK_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.chdir(tmp_path)


@pytest.fixture()
def passages_file(tmp_path: Path) -> Path:
    path = tmp_path / "passages.txt"
    path.write_text("\n".join(PASSAGES) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def expected(tiny_reranker: Reranker) -> list[tuple[int, float, float, str]]:
    """What the library says, to compare every CLI output with."""
    return [(r.index, r.score, r.raw_score, r.text) for r in tiny_reranker.rerank(QUERY, PASSAGES)]


def flat(text: str) -> str:
    """Rich wraps long lines at the terminal width; compare text with whitespace runs collapsed."""
    return " ".join(text.split())


def invoke(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    return runner.invoke(cli.app, list(args), input=input, env=env)


def rerank_args(model_dir: Path, passages: str, *extra: str) -> list[str]:
    return ["rerank", "--query", QUERY, "--passages", passages, "--model", str(model_dir), "--device", "cpu", *extra]


def rows_of(results: list[dict[str, object]]) -> list[tuple[int, float, float, str]]:
    return [(int(r["index"]), float(r["score"]), float(r["raw_score"]), str(r["text"])) for r in results]  # type: ignore[arg-type]


def assert_same(got: list[tuple[int, float, float, str]], want: list[tuple[int, float, float, str]]) -> None:
    assert [g[0] for g in got] == [w[0] for w in want]
    assert [g[3] for g in got] == [w[3] for w in want]
    for g, w in zip(got, want):
        assert g[1] == pytest.approx(w[1], abs=1e-6)
        assert g[2] == pytest.approx(w[2], abs=1e-6)


# --- help and option wiring ------------------------------------------------------------------------------------------


def test_top_level_help_lists_the_commands() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    for command in MODEL_COMMANDS:
        assert command in result.output


@pytest.mark.parametrize(("command", "words"), [
    ("rerank", ["--query", "--passages", "--top-k", "--format", "--output", "--threshold"]),
    ("demo", ["--threshold"]),
    ("check", []),
])
def test_command_help(command: str, words: list[str]) -> None:
    result = invoke(command, "--help")
    assert result.exit_code == 0, result.output
    for word in [*words, "--model", "--device", "--dtype", "--max-length", "--max-batch-tokens", "--models-dir"]:
        assert word in result.output


def click_commands() -> dict[str, typer.core.TyperCommand]:
    """The commands as typer builds them (typer vendors its own click, so its types are typer's)."""
    group = typer.main.get_command(cli.app)
    return dict(group.commands)  # type: ignore[attr-defined]


def test_every_option_reads_a_crossrank_environment_variable() -> None:
    for name, command in click_commands().items():
        for param in command.params:
            if isinstance(param, typer.core.TyperOption) and param.name != "help":
                assert isinstance(param.envvar, str), f"{name} {param.opts} has no environment variable"
                assert param.envvar.startswith("CROSSRANK_"), f"{name} {param.opts}: {param.envvar}"


def test_model_commands_share_the_model_options() -> None:
    commands = click_commands()
    for name in MODEL_COMMANDS:
        envvars = {p.envvar for p in commands[name].params}
        for setting in ("MODEL", "DEVICE", "DTYPE", "MAX_LENGTH", "MAX_BATCH_TOKENS", "MODELS_DIR"):
            assert f"CROSSRANK_{setting}" in envvars, f"{name} lacks --{setting.lower().replace('_', '-')}"


def test_version_flag() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"crossrank {crossrank.__version__}"


# --- rerank ----------------------------------------------------------------------------------------------------------


def test_rerank_json_scores_equal_the_library(tiny_model_dir: Path, passages_file: Path, expected: list) -> None:  # type: ignore[type-arg]
    result = invoke(*rerank_args(tiny_model_dir, str(passages_file), "--format", "json"))
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [r["rank"] for r in data] == list(range(1, len(PASSAGES) + 1))
    assert_same(rows_of(data), expected)


def test_rerank_jsonl(tiny_model_dir: Path, passages_file: Path, expected: list) -> None:  # type: ignore[type-arg]
    result = invoke(*rerank_args(tiny_model_dir, str(passages_file), "-f", "jsonl"))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == len(PASSAGES)
    assert_same(rows_of([json.loads(line) for line in lines]), expected)


def test_rerank_csv(tiny_model_dir: Path, passages_file: Path, expected: list) -> None:  # type: ignore[type-arg]
    result = invoke(*rerank_args(tiny_model_dir, str(passages_file), "--format", "csv"))
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(rows[0]) == ["rank", "index", "score", "raw_score", "chunk", "text"]
    assert_same(rows_of(rows), expected)  # type: ignore[arg-type]


def test_rerank_table(tiny_model_dir: Path, passages_file: Path, expected: list) -> None:  # type: ignore[type-arg]
    result = invoke(*rerank_args(tiny_model_dir, str(passages_file)))
    assert result.exit_code == 0, result.output
    table_lines = [line for line in result.stdout.splitlines() if any(p in line for p in PASSAGES)]
    assert len(table_lines) == len(PASSAGES)
    for rank, (line, (index, score, raw, text)) in enumerate(zip(table_lines, expected), start=1):
        cells = [c.strip() for c in line.strip("│┃ ").split("│")]
        assert cells == [str(rank), f"{score:.4f}", f"{raw:.4f}", str(index), text]
    assert QUERY in result.stdout


def test_rerank_top_k(tiny_model_dir: Path, passages_file: Path, expected: list) -> None:  # type: ignore[type-arg]
    result = invoke(*rerank_args(tiny_model_dir, str(passages_file), "--top-k", "2", "--format", "json"))
    assert result.exit_code == 0, result.output
    assert_same(rows_of(json.loads(result.stdout)), expected[:2])


def test_rerank_output_file(tiny_model_dir: Path, passages_file: Path, tmp_path: Path,
                            expected: list) -> None:  # type: ignore[type-arg]
    target = tmp_path / "out.json"
    result = invoke(*rerank_args(tiny_model_dir, str(passages_file), "--format", "json", "--output", str(target)))
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert f"wrote {len(PASSAGES)} results to" in flat(result.stderr)
    assert_same(rows_of(json.loads(target.read_text(encoding="utf-8"))), expected)


def test_rerank_table_to_file_has_no_colour_codes(tiny_model_dir: Path, passages_file: Path, tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    result = invoke(*rerank_args(tiny_model_dir, str(passages_file), "-o", str(target)))
    assert result.exit_code == 0, result.output
    written = target.read_text(encoding="utf-8")
    assert all(p in written for p in PASSAGES)
    assert "\x1b[" not in written
    assert not any(p in result.stdout for p in PASSAGES)


def test_rerank_from_stdin(tiny_model_dir: Path, expected: list) -> None:  # type: ignore[type-arg]
    result = invoke(*rerank_args(tiny_model_dir, "-", "--format", "json"), input="\n".join(PASSAGES) + "\n")
    assert result.exit_code == 0, result.output
    assert_same(rows_of(json.loads(result.stdout)), expected)


def test_rerank_from_jsonl_file(tiny_model_dir: Path, tmp_path: Path, expected: list) -> None:  # type: ignore[type-arg]
    path = tmp_path / "passages.jsonl"
    path.write_text("".join(json.dumps({"id": f"d{i}", "text": p}, ensure_ascii=False) + "\n"
                            for i, p in enumerate(PASSAGES)), encoding="utf-8")
    result = invoke(*rerank_args(tiny_model_dir, str(path), "--format", "json"))
    assert result.exit_code == 0, result.output
    assert_same(rows_of(json.loads(result.stdout)), expected)


def test_rerank_missing_passages_file(tiny_model_dir: Path) -> None:
    result = invoke(*rerank_args(tiny_model_dir, "no-such-file.txt"))
    assert result.exit_code == 1
    assert "passages file 'no-such-file.txt' does not exist" in flat(result.stderr)
    assert "Traceback" not in result.output


def test_rerank_invalid_format(tiny_model_dir: Path, passages_file: Path) -> None:
    result = invoke(*rerank_args(tiny_model_dir, str(passages_file), "--format", "xml"))
    assert result.exit_code == 1
    assert "--format must be one of table, json, jsonl, csv, not 'xml'" in flat(result.stderr)


@pytest.mark.parametrize(("dtype", "missing"), [("int8", "VNNI or AMX"), ("bf16", "AVX-512 BF16 or AMX")])
def test_rerank_reduced_precision_on_a_cpu_without_it_is_one_clear_line(
        tiny_model_dir: Path, passages_file: Path, monkeypatch: pytest.MonkeyPatch, dtype: str, missing: str) -> None:
    from crossrank.model import devices

    monkeypatch.setattr(devices, "cpu_flags", lambda: frozenset(("avx2",)))
    result = invoke(*rerank_args(tiny_model_dir, str(passages_file), "--dtype", dtype))
    assert result.exit_code == 1
    assert f"error: dtype='{dtype}' on CPU needs" in flat(result.stderr) and missing in flat(result.stderr)
    assert "Traceback" not in result.output


def test_rerank_int8_scores_near_fp32(tiny_model_dir: Path, passages_file: Path, expected: list,  # type: ignore[type-arg]
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from crossrank.model import devices

    monkeypatch.setattr(devices, "cpu_flags", lambda: frozenset(("avx512_vnni",)))
    result = invoke(*rerank_args(tiny_model_dir, str(passages_file), "--format", "json", "--dtype", "int8"))
    assert result.exit_code == 0, result.output
    got = {r[0]: r[2] for r in rows_of(json.loads(result.stdout))}
    want = {r[0]: r[2] for r in expected}
    assert got.keys() == want.keys() and got != want
    spread = max(want.values()) - min(want.values())
    assert max(abs(got[i] - want[i]) for i in want) < 0.35 * spread  # as tests/backends/test_quantized.py's bound


def test_rerank_missing_model_is_one_clear_line(passages_file: Path) -> None:
    result = invoke("rerank", "-q", QUERY, "-p", str(passages_file), "-m", "nowhere-org/nowhere-model")
    assert result.exit_code == 1
    assert "error: model 'nowhere-org/nowhere-model' was not found" in flat(result.stderr)
    assert "Traceback" not in result.output


def test_environment_variables_choose_model_format_and_top_k(tiny_model_dir: Path, passages_file: Path,
                                                             expected: list) -> None:  # type: ignore[type-arg]
    env = {"CROSSRANK_MODEL": str(tiny_model_dir), "CROSSRANK_DEVICE": "cpu", "CROSSRANK_FORMAT": "json",
           "CROSSRANK_TOP_K": "3"}
    result = invoke("rerank", "--query", QUERY, "--passages", str(passages_file), env=env)
    assert result.exit_code == 0, result.output
    assert_same(rows_of(json.loads(result.stdout)), expected[:3])


def test_many_passages_drive_the_progress_bar(tiny_model_dir: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    updates: list[tuple[float | None, float | None]] = []

    class SpyProgress(console.Progress):
        def update(self, task_id, *, completed=None, total=None, **kwargs):  # type: ignore[no-untyped-def]
            updates.append((completed, total))
            super().update(task_id, completed=completed, total=total, **kwargs)

    monkeypatch.setattr(console, "Progress", SpyProgress)
    n = console.PROGRESS_MIN_PAIRS + 6
    path = tmp_path / "many.txt"
    path.write_text("\n".join(f"passage number {i} about coffee and trains" for i in range(n)), encoding="utf-8")
    result = invoke(*rerank_args(tiny_model_dir, str(path), "--format", "jsonl", "--max-batch-tokens", "256"))
    assert result.exit_code == 0, result.output
    assert sorted(json.loads(line)["index"] for line in result.stdout.splitlines()) == list(range(n))
    assert len(updates) > 1  # several batches, each reported
    assert updates[-1] == (n, n)
    assert [u[0] for u in updates] == sorted(u[0] for u in updates)  # type: ignore[type-var]


def test_few_passages_get_no_progress_bar() -> None:
    with console.progress_bar(console.PROGRESS_MIN_PAIRS - 1, "scoring") as progress:
        assert progress is None
    with console.progress_bar(console.PROGRESS_MIN_PAIRS, "scoring") as progress:
        assert callable(progress)
        progress(1, console.PROGRESS_MIN_PAIRS)


# --- demo and check --------------------------------------------------------------------------------------------------


def test_demo_prints_every_case_and_the_device(tiny_model_dir: Path) -> None:
    result = invoke("demo", "--model", str(tiny_model_dir))
    assert result.exit_code == 0, result.output
    output = flat(result.stdout)
    for case in commands.demo_cases():
        assert f"{case['name']}:" in output
    device = resolve_device("auto")
    assert f"on {device} / {dtype_name(resolve_dtype('auto', device))}" in output
    assert len(commands.demo_cases()) >= 2


def test_check_passes_on_the_tiny_model(tiny_model_dir: Path) -> None:
    result = invoke("check", "--model", str(tiny_model_dir))
    assert result.exit_code == 0, result.output
    output = flat(result.stdout)
    if resolve_device("auto").type == "cuda":
        assert "compute capability" in output
    else:
        assert "crossrank will use the CPU with fp32" in output
    assert "(local)" in output
    assert "sanity score" in output
    assert "✗" not in output


def test_check_with_the_model_nowhere_fails_with_the_fix() -> None:
    result = invoke("check", "--model", "nowhere-org/nowhere-model")
    assert result.exit_code == 1
    output = flat(result.stdout)
    assert "✗ model: model 'nowhere-org/nowhere-model' was not found" in output
    assert "fix:" in output
    assert "./models/nowhere-model" in output
    assert "--model /path/to/model" in output
    assert "HF_HOME" in output
    assert "sanity score" not in output


def test_check_with_an_unknown_device_fails() -> None:
    result = invoke("check", "--device", "tpu")
    assert result.exit_code == 1
    output = flat(result.stdout)
    assert "✗ device: unknown device 'tpu'" in output
    assert "fix: use --device auto" in output


# --- as a real process -----------------------------------------------------------------------------------------------


def run_module(args: list[str], tmp_path: Path, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m crossrank …` in a clean environment: offline, empty HF_HOME, no ./models."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CROSSRANK_", "HF_", "HUGGINGFACE_"))}
    env.update({"PYTHONPATH": str(SRC), "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf-home"),
                "COLUMNS": "200"})
    return subprocess.run([sys.executable, "-m", "crossrank", *args], env=env, cwd=tmp_path, input=input,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow  # starts the CLI in a new interpreter
def test_subprocess_help(tmp_path: Path) -> None:
    proc = run_module(["--help"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Usage: crossrank" in proc.stdout
    for command in MODEL_COMMANDS:
        assert command in proc.stdout


@pytest.mark.slow  # starts the CLI in a new interpreter
def test_subprocess_rerank_json_from_stdin(tiny_model_dir: Path, tmp_path: Path,
                                           expected: list) -> None:  # type: ignore[type-arg]
    proc = run_module(rerank_args(tiny_model_dir, "-", "--format", "json"), tmp_path, input="\n".join(PASSAGES))
    assert proc.returncode == 0, proc.stderr
    assert_same(rows_of(json.loads(proc.stdout)), expected)


@pytest.mark.slow  # starts the CLI in a new interpreter
def test_subprocess_check_offline_without_the_model(tmp_path: Path) -> None:
    proc = run_module(["check", "--model", "BAAI/bge-reranker-v2-m3"], tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    output = flat(proc.stdout)
    assert "HF_HUB_OFFLINE is set, so no download was tried" in output
    assert str(tmp_path / "hf-home" / "hub") in output  # HF_HOME honoured
    assert "./models/bge-reranker-v2-m3" in output
    assert "Traceback" not in proc.stderr


# --- user mistakes: one line, non-zero, no traceback -------------------------------------------------------------


def one_error_line(result: Result) -> str:
    assert result.exit_code == 1, result.output
    assert ("Traceback" not in result.output and result.exception is None) or isinstance(result.exception, SystemExit)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def test_rerank_dev_null_is_read_not_refused(tiny_model_dir: Path) -> None:
    result = invoke(*rerank_args(tiny_model_dir, os.devnull, "--format", "json"))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == []


def test_rerank_jsonl_ids_reach_the_output(tiny_model_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "passages.jsonl"
    path.write_text("".join(json.dumps({"id": f"d{i}", "text": p}, ensure_ascii=False) + "\n"
                            for i, p in enumerate(PASSAGES)), encoding="utf-8")
    result = invoke(*rerank_args(tiny_model_dir, str(path), "--format", "jsonl"))
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert all(row["id"] == f"d{row['index']}" for row in rows)


def test_rerank_to_a_folder_is_refused_before_the_model_loads(tmp_path: Path, passages_file: Path) -> None:
    line = one_error_line(invoke("rerank", "-q", "x", "-p", str(passages_file), "-o", str(tmp_path),
                                 "-m", "nowhere-org/nowhere-model"))
    assert f"--output {tmp_path} is a folder" in line


def test_file_names_and_install_hints_keep_their_brackets(tiny_model_dir: Path) -> None:
    line = one_error_line(invoke(*rerank_args(tiny_model_dir, "missing[1].txt")))
    assert "passages file 'missing[1].txt' does not exist" in line
    app = typer.Typer()

    @app.command()
    def needs_extra() -> None:
        with console.friendly_errors():
            raise ImportError("crossrank eval needs ranx: pip install 'crossrank[eval]'")

    result = CliRunner().invoke(app, [])
    assert "pip install 'crossrank[eval]'" in one_error_line(result)


def test_a_missing_local_model_folder_is_not_sent_to_the_hub(passages_file: Path) -> None:
    result = invoke("rerank", "-q", "x", "-p", str(passages_file), "-m", "/nonexistent/model")
    assert "model folder /nonexistent/model does not exist" in one_error_line(result)
    assert "hf download" not in result.output


def test_the_download_command_is_never_wrapped_mid_line(passages_file: Path) -> None:
    result = invoke("rerank", "-q", "x", "-p", str(passages_file), "-m", "nowhere-org/a-rather-long-model-name")
    [line] = [line for line in result.stderr.splitlines() if "hf download" in line]
    assert "`hf download nowhere-org/a-rather-long-model-name --local-dir models/a-rather-long-model-name`" in line


def test_ctrl_c_is_exit_130_without_a_traceback() -> None:
    with pytest.raises(typer.Exit) as stopped, console.friendly_errors():
        raise KeyboardInterrupt
    assert stopped.value.exit_code == 130


def test_serve_with_ray_missing_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray.serve", None)  # as where Ray is not installed
    result = invoke("serve", "--ray", "--model", "nowhere")
    assert "pip install 'crossrank[ray]'" in one_error_line(result)
