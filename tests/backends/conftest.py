"""Running the CUDA path's Triton code on the CPU, through Triton's interpreter, in a process of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

INTERPRETER_RUN = Path(__file__).with_name("interpreter_run.py")


@pytest.fixture(scope="module")
def run_interpreted(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, Any], Any]:
    """``run_interpreted(kind, request)``: interpreter_run.py's answer to ``request`` (saved with torch.save), run
    with TRITON_INTERPRET=1 in a child process; interpreter_run.py says why a child."""

    def run(kind: str, request: Any) -> Any:
        folder = tmp_path_factory.mktemp(f"interpreted-{kind}")
        torch.save(request, folder / "request.pt")
        subprocess.run([sys.executable, str(INTERPRETER_RUN), kind, str(folder / "request.pt"), str(folder / "out.pt")],
                       env={**os.environ, "TRITON_INTERPRET": "1"}, check=True, timeout=600)
        return torch.load(folder / "out.pt")

    return run
