"""The shared model options: one definition, added to each command by ``model_options``, handed over as one
ModelSettings; the modes' choices come from the settings' Literal types."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from crossrank.cli import options as opt
from crossrank.core.settings import DTYPES, LONG_PASSAGES, ModelSettings, env_var

runner = CliRunner()


def app_receiving(got: list[ModelSettings], devices: bool = False) -> typer.Typer:
    app = typer.Typer()

    @app.command()
    @opt.model_options(devices=devices)
    def score(query: str = typer.Option("q"), *, settings: ModelSettings) -> None:
        got.append(settings)

    @app.command()
    def other() -> None:  # a second command keeps typer from collapsing the app into one command
        pass

    return app


def test_defaults_are_the_settings_defaults() -> None:
    got: list[ModelSettings] = []
    result = runner.invoke(app_receiving(got), ["score"])
    assert result.exit_code == 0, result.output
    assert got == [ModelSettings()]


def test_every_value_reaches_the_settings() -> None:
    got: list[ModelSettings] = []
    result = runner.invoke(app_receiving(got, devices=True), [
        "score", "--model", "m", "--device", "cpu", "--dtype", "fp32", "--max-length", "256",
        "--max-batch-tokens", "999", "--backend", "padded", "--long-passages", "chunk", "--models-dir", "weights",
        "--devices", "cpu,cpu"])
    assert result.exit_code == 0, result.output
    assert got == [ModelSettings(model="m", device="cpu", dtype="fp32", max_length=256, max_batch_tokens=999,
                                 backend="padded", long_passages="chunk", models_dir="weights", devices="cpu,cpu")]
    assert type(got[0].dtype) is str  # the plain value, not the CLI's enum member


def test_each_shared_option_reads_the_variable_of_its_setting() -> None:
    got: list[ModelSettings] = []
    env = {env_var("dtype"): "bf16", env_var("max_length"): "128", env_var("long_passages"): "chunk"}
    result = runner.invoke(app_receiving(got), ["score"], env=env)
    assert result.exit_code == 0, result.output
    assert (got[0].dtype, got[0].max_length, got[0].long_passages) == ("bf16", 128, "chunk")
    command = typer.main.get_command(app_receiving([])).commands["score"]  # type: ignore[attr-defined]
    for param in command.params:
        if param.name in opt.OPTIONS:
            assert param.envvar == env_var(param.name), param.name
            assert param.help, f"--{param.name} has no help text"


def test_the_choices_come_from_the_settings_and_others_are_refused() -> None:
    result = runner.invoke(app_receiving([]), ["score", "--help"], env={"COLUMNS": "200"})
    assert "|".join(DTYPES) in result.output and "|".join(LONG_PASSAGES) in result.output
    refused = runner.invoke(app_receiving([]), ["score", "--dtype", "fp64"])
    assert refused.exit_code == 2 and "fp64" in refused.output


def test_devices_only_where_asked() -> None:
    names = {p.name for p in typer.main.get_command(app_receiving([])).commands["score"].params}  # type: ignore[attr-defined]
    assert "devices" not in names and "dtype" in names


def test_a_command_without_a_settings_parameter_is_refused_when_defined() -> None:
    with pytest.raises(TypeError, match="settings"):
        opt.model_options()(lambda query: None)


@pytest.mark.parametrize(("field", "value"), [("dtype", "fp64"), ("backend", "onnx"), ("long_passages", "cut")])
def test_settings_refuse_an_unknown_mode(field: str, value: str) -> None:
    with pytest.raises(ValueError, match=f"{field} must be one of"):
        ModelSettings(**{field: value})  # type: ignore[arg-type]
