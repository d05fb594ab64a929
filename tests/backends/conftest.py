"""Running the CUDA path's Triton code on the CPU, through Triton's interpreter, in a process of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from packaging.version import Version

INTERPRETER_RUN = Path(__file__).with_name("interpreter_run.py")


def interpreter_problem() -> str | None:
    """Why Triton's interpreter cannot run here, or None. `.ci/run` installs a Triton whose interpreter can."""
    try:
        import triton
    except ImportError:
        return "needs Triton, whose CPU interpreter runs these tests (.ci/run installs it)"
    if Version(triton.__version__) < Version("3.7") and Version(np.__version__) >= Version("2.4"):
        # 3.6's interpreter converts a one-element array with int(), which NumPy 2.4 refuses; 3.7's, 3.8's and 3.9's
        # do not (all four tried with NumPy 2.4.6).
        return f"Triton {triton.__version__}'s interpreter fails with NumPy {np.__version__} (3.7 and later work)"
    return None


@pytest.fixture(scope="module")
def run_interpreted(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, Any], Any]:
    """``run_interpreted(kind, request)``: interpreter_run.py's answer to ``request`` (saved with torch.save), run
    with TRITON_INTERPRET=1 in a child process; interpreter_run.py says why a child. Skips the tests that use it
    where :func:`interpreter_problem` finds a reason."""
    problem = interpreter_problem()
    if problem is not None:
        pytest.skip(problem)

    def run(kind: str, request: Any) -> Any:
        folder = tmp_path_factory.mktemp(f"interpreted-{kind}")
        torch.save(request, folder / "request.pt")
        subprocess.run([sys.executable, str(INTERPRETER_RUN), kind, str(folder / "request.pt"), str(folder / "out.pt")],
                       env={**os.environ, "TRITON_INTERPRET": "1"}, check=True, timeout=600)
        return torch.load(folder / "out.pt")

    return run
