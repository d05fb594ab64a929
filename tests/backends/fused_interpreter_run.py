"""Runs crossrank.backends.fused's kernels on the inputs saved in ``argv[1]`` and saves what they return to ``argv[2]``.

Started by test_fused_interpreted.py with TRITON_INTERPRET=1, in a process of its own: Triton decides at import time
whether its own library functions (``tl.sum``, ``tl.max``, ...) are interpreted, so the variable must be set before
anything imports Triton, and must not be set in the test process, where it would turn the GPU tests' kernels into
interpreted ones too.
"""

from __future__ import annotations

import os
import sys

import torch

assert os.environ.get("TRITON_INTERPRET") == "1", "run this with TRITON_INTERPRET=1"

from crossrank.backends import fused  # noqa: E402  (after the check: Triton is imported here)


def main(cases_path: str, out_path: str) -> None:
    outputs = {}
    for name, (kind, args) in torch.load(cases_path).items():
        if kind == "add_layer_norm":
            outputs[name] = fused.add_layer_norm(*args)
        elif kind == "varlen_attention":
            outputs[name] = fused.varlen_attention(*args)
        elif kind == "varlen_attention_items":
            outputs[name] = fused.varlen_attention_items(*args)
        else:
            raise ValueError(f"unknown kind {kind!r}")
    torch.save(outputs, out_path)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
