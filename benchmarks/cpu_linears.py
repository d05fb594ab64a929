"""The CPU's linears: the four of each encoder layer (Q/K/V, attention output, feed-forward up and down) of a model's
shape, each layer with weights of its own as in a model (so they stream from memory as in a forward pass, not from
cache), each way crossrank could run them, on the same inputs. This is what chose the packed backend's CPU kernels.

- ``fp32-mkl``: ``F.linear`` (MKL's sgemm), what crossrank runs in fp32 on Intel CPUs;
- ``fp32-onednn``: oneDNN's matmul, what crossrank runs in fp32 on other CPUs;
- ``bf16``, ``int8``: crossrank's reduced-precision linears (``crossrank.backends.quantized``);
- ``int8-fbgemm``: PyTorch's dynamically quantised linear (FBGEMM), the common alternative to crossrank's int8.

Times are medians over ``--rounds`` passes through every layer, in ms per layer (its four linears). oneDNN picks
its kernels from the CPU's instruction sets; ``ONEDNN_MAX_CPU_ISA=AVX512_CORE_VNNI`` (or ``AVX512_CORE_BF16``) in the
environment shows what a CPU without AMX would get.

    PYTHONPATH=src python benchmarks/cpu_linears.py --size v2m3 --json linears.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

import throughput as tp

Linear = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def fbgemm_linear(weights: list[tuple[torch.Tensor, torch.Tensor]]) -> Linear:
    """PyTorch's dynamic int8 linear, weights quantised per output channel as crossrank's are."""
    packed = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyTorch's quantised tensor types are deprecated
        for w, b in weights:
            scales = (w.abs().amax(dim=1) / 127.0).clamp_min(1e-12).double()
            q = torch.quantize_per_channel(w, scales, torch.zeros_like(scales, dtype=torch.long), 0, torch.qint8)
            packed[w.data_ptr()] = torch.ops.quantized.linear_prepack(q, b)
    return lambda x, w, b: torch.ops.quantized.linear_dynamic(x, packed[w.data_ptr()], False)


def runners(weights: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, Linear]:
    from crossrank.backends.quantized import LowPrecisionLinears

    return {
        "fp32-mkl": F.linear,
        "fp32-onednn": lambda x, w, b: torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], ""),
        "bf16": LowPrecisionLinears([(w, b, None) for w, b in weights], torch.bfloat16),
        "int8": LowPrecisionLinears([(w, b, None) for w, b in weights], torch.int8),
        "int8-fbgemm": fbgemm_linear(weights),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=sorted(tp.SIZES), default="v2m3", help="the model shape (throughput.py's)")
    ap.add_argument("--tokens", default="782,800,1634",
                    help="rows of the activations (tokens of a packed batch), comma-separated: oneDNN's fp32 speed "
                         "depends on how the count aligns")
    ap.add_argument("--rounds", type=int, default=5, help="the runners take turns this many times")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    arch = tp.SIZES[args.size]
    hidden, inner, layers = arch["hidden"], arch["intermediate"], arch["layers"]
    gen = torch.Generator().manual_seed(0)
    shapes = [(hidden, 3 * hidden), (hidden, hidden), (hidden, inner), (inner, hidden)] * layers
    weights = [(torch.randn(o, i, generator=gen) * 0.02, torch.randn(o, generator=gen) * 0.01) for i, o in shapes]
    calls = runners(weights)
    result: dict[str, Any] = {
        "device": tp.cpu_name(), "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M"),
        "size": args.size, "threads": torch.get_num_threads(),
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "ALL"), "rounds": args.rounds, "by_tokens": {},
    }
    for tokens in (int(t) for t in args.tokens.split(",")):
        inputs = [torch.randn(tokens, i, generator=gen) for i, _ in shapes[:4]] * layers
        layer_ms, errors = time_layers(calls, inputs, weights, args.rounds)
        result["by_tokens"][str(tokens)] = {"layer_ms": layer_ms, "max_rel_error_vs_fp32": errors}
        print(tokens, layer_ms, flush=True)
    tp.emit(result, args.json)


def time_layers(calls: dict[str, Linear], inputs: list[torch.Tensor], weights: list[tuple[torch.Tensor, torch.Tensor]],
                rounds: int) -> tuple[dict[str, float], dict[str, float]]:
    """Every runner through every layer's linears, taking turns ``rounds`` times: the median ms per layer, and each
    runner's largest error relative to fp32's product."""
    layers = len(weights) // 4
    times: dict[str, list[float]] = {name: [] for name in calls}
    errors: dict[str, float] = {}
    with torch.inference_mode():
        for name, call in calls.items():  # warm up, and how far each is from fp32's product
            errors[name] = 0.0
            for x, (w, b) in zip(inputs, weights, strict=True):
                want = F.linear(x, w, b)
                errors[name] = max(errors[name], float((call(x, w, b) - want).abs().max() / want.abs().max()))
        for _ in range(rounds):
            for name, call in calls.items():
                start = time.perf_counter()
                for x, (w, b) in zip(inputs, weights, strict=True):
                    call(x, w, b)
                times[name].append((time.perf_counter() - start) / layers)
    return ({name: round(1000 * statistics.median(t), 2) for name, t in times.items()},
            {name: round(e, 5) for name, e in errors.items()})


if __name__ == "__main__":
    main()
