"""What the wheel ships and which extra brings what."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import tomllib

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_the_wheel_marks_the_package_typed() -> None:
    config = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))
    assert "py.typed" in config["tool"]["setuptools"]["package-data"]["crossrank"]
    assert resources.files("crossrank").joinpath("py.typed").is_file()


def test_local_batch_jobs_need_only_the_light_extra() -> None:
    extras = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    assert [d for d in extras["batch"] if d.startswith("pyarrow")]
    assert not [d for d in extras["batch"] if d.startswith("ray")]
    assert "crossrank[batch]" in extras["ray"]
