"""The shared typer options and their translation into ModelSettings."""

from __future__ import annotations

import typing

from crossrank.cli import options as opt
from crossrank.core.settings import ModelSettings, env_var


def test_defaults_are_the_settings_defaults() -> None:
    assert opt.model_settings() == ModelSettings()


def test_every_value_reaches_the_settings() -> None:
    settings = opt.model_settings("m", "cpu", "fp32", 256, 999, "padded", "chunk", "weights")
    assert settings == ModelSettings(model="m", device="cpu", dtype="fp32", max_length=256, max_batch_tokens=999,
                                     backend="padded", long_passages="chunk", models_dir="weights")


def test_each_shared_option_reads_the_variable_of_its_setting() -> None:
    options = {"Model": "model", "Device": "device", "Dtype": "dtype", "MaxLength": "max_length",
               "MaxBatchTokens": "max_batch_tokens", "Backend": "backend", "LongPassages": "long_passages",
               "ModelsDir": "models_dir"}
    for alias, setting in options.items():
        (info,) = typing.get_args(getattr(opt, alias))[1:]
        assert info.envvar == env_var(setting), alias
        assert info.help, f"{alias} has no help text"
