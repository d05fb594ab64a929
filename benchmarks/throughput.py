"""End-to-end throughput: crossrank (packed, padded) vs FlagReranker vs sentence-transformers CrossEncoder.

Same random weights (the exact v2-m3 architecture on GPU, a MiniLM-sized model on CPU), same synthetic texts,
text in and scores out (tokenisation included). Prints a table and writes JSON.

    # GPU, everything (about 4 minutes on an H100 after the model is built)
    PYTHONPATH=src python benchmarks/throughput.py --device cuda --json out.json
    # CPU, small N
    PYTHONPATH=src python benchmarks/throughput.py --device cpu --size minilm --pairs 256 --modes e2e --json cpu.json
    # CPU against the references, taking turns over 5 rounds (for a machine whose speed drifts from minute to minute)
    PYTHONPATH=src python benchmarks/throughput.py --device cpu --size minilm --pairs 256 --modes e2e \
        --runners packed,flag,ce32 --repeats 5 --interleave --json cpu.json

Modes (``--modes``, comma separated): e2e (pairs/s, the median of ``--repeats`` timed runs after a 64-pair warm-up, and
peak memory of every runner, order check; with ``--interleave`` the runners take turns, one timed run each per round,
which is the fair comparison on a machine whose speed drifts, such as a shared VM), model (model-only
utilisation, pre-tokenised), latency (one query, 100 passages of ~256 tokens, median of 50), long (max_length 8192),
compile (model-only with torch.compile of the post-attention block), grid (CPU: model sizes x passage lengths, see
grid.py; ``--runners packed,flag,ce32``, ``--repeats`` rounds).

    # the CPU grid, 5 rounds (about 25 minutes on 2 cores)
    PYTHONPATH=src python benchmarks/throughput.py --device cpu --size v2m3 --pairs 8 --modes grid \
        --runners packed,flag,ce32 --repeats 5 --model-dir /tmp/cpu --json grid.json
    # bf16 and int8 against fp32, v2-m3's shape, 16 pairs of ~230 tokens, 6 rounds
    PYTHONPATH=src python benchmarks/throughput.py --device cpu --size v2m3 --pairs 16 --per-query 16 --modes e2e \
        --runners packed,packed-bf16,packed-int8 --repeats 6 --interleave --model-dir /tmp/cpu --json dtypes.json
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

SIZES = {
    "v2m3": {"layers": 24, "hidden": 1024, "heads": 16, "intermediate": 4096, "max_positions": 8194},
    "base": {"layers": 12, "hidden": 768, "heads": 12, "intermediate": 3072, "max_positions": 8194},
    "minilm": {"layers": 6, "hidden": 384, "heads": 12, "intermediate": 1536, "max_positions": 8194},
    "small": {"layers": 2, "hidden": 32, "heads": 2, "intermediate": 128, "max_positions": 8194},
}
PEAK_TFLOPS = {"cuda": 989.0}  # H100/H200 SXM dense bf16/fp16


def cpu_name() -> str:
    """The CPU's model name and its bf16/int8 flags, from /proc/cpuinfo where there is one."""
    from crossrank.model.devices import CPU_BF16_FLAGS, CPU_INT8_FLAGS, cpu_flags

    name = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        lines = [line for line in cpuinfo.read_text().splitlines() if line.startswith("model name")]
        name = lines[0].split(":", 1)[1].strip() if lines else name
    flags = sorted(cpu_flags() & {*CPU_BF16_FLAGS, *CPU_INT8_FLAGS})
    return f"{name} ({', '.join(flags) or 'no bf16/int8 flags'})"


def emit(result: dict[str, Any], path: str | None) -> None:
    """Print ``result`` as JSON, and write it to ``path`` where given."""
    text = json.dumps(result, indent=1)
    if path:
        Path(path).write_text(text)
    print(text)


# ---------------------------------------------------------------- synthetic multilingual text and tokenizer

def pseudo_words(rng: random.Random) -> list[str]:
    """A large pseudo-vocabulary in several scripts, so a ~32k Unigram vocabulary is actually used."""
    scripts = [
        ("bcdfghjklmnprstvwz", "aeiou"),            # Latin
        ("бвгдзклмнпрстфх", "аеиоуы"),              # Cyrillic
        ("βγδζθκλμνπρστφχ", "αεηιουω"),             # Greek
    ]
    words = []
    for cons, vows in scripts:
        for _ in range(6000):
            words.append("".join(rng.choice(cons) + rng.choice(vows) for _ in range(rng.randint(1, 4))))
    cjk = [chr(c) for c in rng.sample(range(0x4E00, 0x9FFF), 3000)]
    words += ["".join(rng.choice(cjk) for _ in range(rng.randint(1, 3))) for _ in range(8000)]
    return words


def random_sentence(rng: random.Random, words: Sequence[str], n: int) -> str:
    return " ".join(rng.choice(words) for _ in range(n))


def build_tokenizer(words: Sequence[str], vocab: int = 32000) -> Any:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import XLMRobertaTokenizer

    rng = random.Random(1)
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(vocab_size=vocab, special_tokens=specials, unk_token="<unk>", show_progress=False)
    tok.train_from_iterator((random_sentence(rng, words, 30) for _ in range(30000)), trainer=trainer)
    pieces = [(p, float(s)) for p, s in json.loads(tok.to_str())["model"]["vocab"]]
    return XLMRobertaTokenizer(vocab=pieces, model_max_length=8192)


def benchmark_mix(n: int, per_query: int = 100) -> tuple[list[str], list[tuple[str, str]]]:
    """The benchmark's words and ``n`` pairs of its mix (``per_query`` passages a query, median 75 words, at most 400):
    the same texts in every script that measures "the benchmark's mix"."""
    rng = random.Random(0)
    words = pseudo_words(rng)
    return words, make_pairs(rng, words, max(1, n // per_query), per_query, 75, 0.6, 400)


def make_pairs(rng: random.Random, words: Sequence[str], queries: int, per_query: int, median_words: float,
               sigma: float, max_words: int) -> list[tuple[str, str]]:
    """Passage word counts log-normal around ``median_words``; a query shared by ``per_query`` passages."""
    pairs = []
    for _ in range(queries):
        q = random_sentence(rng, words, rng.randint(4, 16))
        for _ in range(per_query):
            n = min(max_words, max(5, int(rng.lognormvariate(math.log(median_words), sigma))))
            pairs.append((q, random_sentence(rng, words, n)))
    return pairs


# ---------------------------------------------------------------- measuring

def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(device: str, fn: Callable[[], Any]) -> tuple[Any, float]:
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - start


def peak_reset(device: str) -> None:
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gb(device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / 1e9 if device == "cuda" else None


def peak_reserved_gb(device: str) -> float | None:
    """What the caching allocator held at most, CUDA graphs' memory pools included (the allocated peak does not
    count the graphs' intermediate tensors, which live in their pool between replays)."""
    return torch.cuda.max_memory_reserved() / 1e9 if device == "cuda" else None


def linear_flops(lengths: Sequence[int], layers: int, hidden: int) -> float:
    """The linear layers' part of :func:`model_flops` (the GEMMs: QKV, output, up and down projections)."""
    return float(sum(2 * n * layers * 12 * hidden * hidden for n in lengths))


def model_flops(lengths: Sequence[int], layers: int, hidden: int) -> float:
    """REFERENCE.md section 5's count, for any size: linear layers + attention, real tokens only."""
    return linear_flops(lengths, layers, hidden) + float(sum(layers * 4 * n * n * hidden for n in lengths))


def order_check(scores: Sequence[float], ref: Sequence[float], per_query: int) -> dict[str, Any]:
    """Per query: is the top-10 identical, is the whole order identical; and the largest difference in logits."""
    top10 = full = 0
    groups = len(scores) // per_query
    for g in range(groups):
        a = scores[g * per_query:(g + 1) * per_query]
        b = ref[g * per_query:(g + 1) * per_query]
        oa = sorted(range(len(a)), key=lambda i: -a[i])
        ob = sorted(range(len(b)), key=lambda i: -b[i])
        top10 += oa[:10] == ob[:10]
        full += oa == ob
    return {"queries": groups, "top10_identical": top10, "order_identical": full,
            "max_abs_diff": max(abs(x - y) for x, y in zip(scores, ref, strict=True))}


# ---------------------------------------------------------------- runners

def crossrank_runner(path: Path, device: str, dtype: str, backend: str, budget: int, max_length: int = 512) -> Any:
    """crossrank's library API over the model at ``path``: text in, scores out."""
    from crossrank import Reranker

    return Reranker(str(path), device=device, dtype=dtype, backend=backend, max_batch_tokens=budget,
                    max_length=max_length)


def model_backend(path: Path, device: str, dtype: str, backend: str, compile: bool = False) -> Any:
    """The network alone, as crossrank runs it (``backend``: packed or padded), for model-only timings of
    pre-tokenised batches; ``compile``: the packed backend with torch.compile of its post-attention block."""
    from crossrank.backends.base import create_backend
    from crossrank.backends.packed import PackedBackend
    from crossrank.model.devices import resolve_dtype
    from crossrank.model.loading import load_model

    where = torch.device(device)
    kind = resolve_dtype(dtype, where)
    tokenizer, model = load_model(path, str(path), dtype=kind, device=where)
    if compile:
        return PackedBackend(model, device=where, dtype=kind, compile=True)
    return create_backend(backend, model, pad_token_id=tokenizer.pad_token_id or 0, device=where, dtype=kind)


def runner_call(name: str, path: Path, dev: str, dtype: str, budget: int,
                warm: Sequence[tuple[str, str]]) -> Callable[[Sequence[tuple[str, str]]], list[float]]:
    """Runner ``name`` loaded and warmed up on ``warm``: a call that scores pairs (logits). ``packed``, ``padded``:
    crossrank's backends in ``dtype``, or in the dtype after a dash (``packed-int8``); ``ref32``: the padded Hugging
    Face path in fp32, the precision reference for the reduced-precision runners; ``flag``: FlagReranker (batch 128);
    ``ceN``: CrossEncoder, batch N."""
    base, _, own_dtype = name.partition("-")
    run_dtype = own_dtype or dtype
    if base in ("packed", "padded", "ref32"):
        r = crossrank_runner(path, dev, "fp32" if base == "ref32" else run_dtype,
                             "padded" if base == "ref32" else base, budget)
        r.score(warm, normalize=False)
        return lambda pairs: r.score(pairs, normalize=False)
    if base == "flag":
        from FlagEmbedding import FlagReranker

        fr = FlagReranker(str(path), use_fp16=run_dtype != "fp32", devices=[dev if dev == "cpu" else "cuda:0"])
        fr.compute_score(warm)
        return lambda pairs: fr.compute_score(pairs, batch_size=128)
    if base.startswith("ce"):
        from sentence_transformers import CrossEncoder

        torch_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[run_dtype]
        ce = CrossEncoder(str(path), device=dev, max_length=512, activation_fn=torch.nn.Identity(),
                          model_kwargs={"dtype": torch_dtype})
        bs = int(base[2:])
        ce.predict(warm, batch_size=bs)
        return lambda pairs: [float(x) for x in ce.predict(pairs, batch_size=bs, show_progress_bar=False)]
    raise SystemExit(f"unknown runner {name}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--size", choices=sorted(SIZES), default=None, help="v2m3 on GPU, minilm on CPU by default")
    ap.add_argument("--dtype", default=None, help="fp16 on GPU, fp32 on CPU by default")
    ap.add_argument("--pairs", type=int, default=None, help="4000 on GPU, 256 on CPU by default")
    ap.add_argument("--per-query", type=int, default=100)
    ap.add_argument("--modes", default="e2e,model,latency,long,compile", help="what to measure (see above)")
    ap.add_argument("--runners", default="packed,padded,flag,ce32,ce128",
                    help="crossrank's packed or padded backend; flag: FlagReranker; ceN: CrossEncoder, batch N; "
                         "ref32: crossrank's padded backend in fp32 (a precision reference)")
    ap.add_argument("--budget", type=int, default=0,
                    help="crossrank max_batch_tokens; 0: crossrank's default for the device")
    ap.add_argument("--repeats", type=int, default=None,
                    help="end-to-end timed runs per runner, median reported (3 on GPU, 1 on CPU by default)")
    ap.add_argument("--long-pairs", type=int, default=256)
    ap.add_argument("--model-dir", default=None, help="reuse a model built earlier")
    ap.add_argument("--interleave", action="store_true",
                    help="e2e: load every runner first, then time one run of each per round (--repeats rounds)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    dev = args.device
    size = args.size or ("v2m3" if dev == "cuda" else "minilm")
    dtype = args.dtype or ("fp16" if dev == "cuda" else "fp32")
    n_pairs = args.pairs or (4000 if dev == "cuda" else 256)
    modes = set(args.modes.split(","))
    runners = args.runners.split(",")
    arch = SIZES[size]
    from crossrank.model.devices import default_batch_tokens

    args.budget = args.budget or default_batch_tokens(torch.device(dev))
    result: dict[str, Any] = {"device": torch.cuda.get_device_name() if dev == "cuda" else cpu_name(),
                              "torch": torch.__version__, "size": size, "arch": arch, "dtype": dtype,
                              "date": time.strftime("%Y-%m-%d %H:%M"), "budget": args.budget,
                              "interleave": args.interleave}
    try:
        import transformers
        result["transformers"] = transformers.__version__
    except ImportError:
        pass

    from crossrank.testing import build_random_reranker

    words, pairs = benchmark_mix(n_pairs, args.per_query)
    if args.model_dir and (Path(args.model_dir) / "config.json").exists():
        path = Path(args.model_dir)
    else:
        t0 = time.perf_counter()
        tok = build_tokenizer(words)
        path = Path(args.model_dir or tempfile.mkdtemp()) / f"random-{size}"
        build_random_reranker(path, tokenizer=tok, **arch)
        result["build_s"] = round(time.perf_counter() - t0, 1)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    result["vocab"] = len(tokenizer)

    per_query = args.per_query
    lens = [len(x) for x in tokenizer([q for q, _ in pairs], [p for _, p in pairs], truncation="only_second",
                                      max_length=512)["input_ids"]]
    result["mix"] = {"pairs": len(pairs), "median_tokens": statistics.median(lens),
                     "mean_tokens": round(statistics.mean(lens), 1), "max_tokens": max(lens)}
    print("mix", result["mix"], flush=True)
    repeats = args.repeats or (3 if dev == "cuda" else 1)

    def timed_runs(fn: Callable[[], Any]) -> tuple[Any, float, list[float]]:
        """``repeats`` timed runs of ``fn`` (after the caller's warm-up): the last output, the median, every time."""
        runs = [timed(dev, fn) for _ in range(repeats)]
        times = [t for _, t in runs]
        return runs[-1][0], statistics.median(times), times

    def e2e_call(name: str, warm: Sequence[tuple[str, str]]) -> Callable[[], list[float]]:
        call = runner_call(name, path, dev, dtype, args.budget, warm)
        return lambda: call(pairs)

    if "e2e" in modes:
        e2e: dict[str, Any] = {}
        scores: dict[str, list[float]] = {}
        warm = pairs[:64]
        times: dict[str, list[float]] = {name: [] for name in runners}
        peaks: dict[str, dict[str, float | None]] = {}
        if args.interleave:
            # Every runner loaded at once, then one timed run of each per round: a machine whose speed drifts
            # (a shared VM) slows every runner of a round alike. Peak memory is not reported: it would count them all.
            calls = {name: e2e_call(name, warm) for name in runners}
            for _ in range(repeats):
                for name in runners:
                    out, secs = timed(dev, calls[name])
                    scores[name] = list(out)
                    times[name].append(secs)
        else:
            for name in runners:  # one runner at a time, its timed runs one after another
                peak_reset(dev)
                call = e2e_call(name, warm)
                out, _, times[name] = timed_runs(call)
                del call
                scores[name] = list(out)
                peaks[name] = {"peak_gpu_gb": peak_gb(dev), "peak_reserved_gb": peak_reserved_gb(dev)}
        for name in runners:
            secs = statistics.median(times[name])
            e2e[name] = {"pairs_per_s": round(len(pairs) / secs, 1), "seconds": round(secs, 3),
                         "runs_s": [round(t, 3) for t in times[name]], **peaks.get(name, {})}
            print("e2e", name, e2e[name], flush=True)
        ref = "flag" if "flag" in scores else None
        if ref:
            for name in scores:
                if name != ref:
                    e2e[name]["vs_flag"] = order_check(scores[name], scores[ref], per_query)
                    e2e[name]["speedup_vs_flag"] = round(e2e[name]["pairs_per_s"] / e2e[ref]["pairs_per_s"], 2)
        if "ref32" in scores:
            spread = statistics.pstdev(scores["ref32"])
            e2e["logit_std_fp32"] = round(spread, 4)
            for name in scores:
                if name != "ref32":
                    e2e[name]["vs_fp32"] = order_check(scores[name], scores["ref32"], per_query)
        result["e2e"] = e2e

    def safe(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """A failed variant (out of memory, compile unsupported) is reported, and the other measurements go on."""
        try:
            return fn()
        except Exception as exc:
            peak_reset(dev)
            return {"error": repr(exc)[:400]}

    def model_only(backend_name: str, encoded: Sequence[Any], budget: int, compile: bool = False,
                   max_batch_size: int | None = None, repeat: int = 2) -> dict[str, Any]:
        """Pre-tokenised model compute only, through crossrank's own batching (or fixed-size padded batches)."""
        from crossrank.core.batching import pack_batches

        backend = model_backend(path, dev, dtype, backend_name, compile)
        lengths = [len(e) for e in encoded]
        batches = pack_batches(lengths, budget, padded=backend.padded, max_batch_size=max_batch_size)

        def run() -> list[torch.Tensor]:
            return [backend.forward([encoded[i] for i in b]) for b in batches]

        peak_reset(dev)
        t0 = time.perf_counter()
        run()  # warm-up (and compilation)
        first = time.perf_counter() - t0
        secs = min(timed(dev, run)[1] for _ in range(repeat))
        flops = model_flops(lengths, arch["layers"], arch["hidden"])
        out = {"pairs_per_s": round(len(encoded) / secs, 1), "seconds": round(secs, 3), "first_run_s": round(first, 2),
               "tflops": round(flops / secs / 1e12, 1), "batches": len(batches), "peak_gpu_gb": peak_gb(dev),
               "peak_reserved_gb": peak_reserved_gb(dev)}
        if dev in PEAK_TFLOPS:
            out["utilisation"] = round(flops / secs / 1e12 / PEAK_TFLOPS[dev], 3)
        return out

    if "grid" in modes:
        from grid import grid

        result["grid"] = grid(path.parent, path, runners, repeats, args.budget)

    if "model" in modes or "compile" in modes:
        from crossrank.core.tokenize import PairEncoder

        encoder = PairEncoder(tokenizer, max_length=512)
        encoded = encoder.encode(pairs)
        mo: dict[str, Any] = {}
        if "model" in modes:
            for budget in (args.budget, 2 * args.budget):
                mo[f"packed_{budget}"] = model_only("packed", encoded, budget)
                print("model", f"packed_{budget}", mo[f"packed_{budget}"], flush=True)
            mo["padded"] = model_only("padded", encoded, args.budget)
            print("model padded", mo["padded"], flush=True)
        if "compile" in modes:
            mo["packed_compiled"] = safe(lambda: model_only("packed", encoded, args.budget, compile=True))
            print("model packed_compiled", mo["packed_compiled"], flush=True)
        result["model_only"] = mo

    if "latency" in modes:
        lat_pairs = make_pairs(random.Random(5), words, 1, 100, 100, 0.1, 400)
        query, passages = lat_pairs[0][0], [p for _, p in lat_pairs]
        lat_lens = [len(x) for x in tokenizer([query] * 100, passages, truncation="only_second",
                                              max_length=512)["input_ids"]]
        lat: dict[str, Any] = {"median_tokens": statistics.median(lat_lens)}
        for name in [x for x in runners if x.partition("-")[0] in ("packed", "padded", "flag")]:
            base, _, own_dtype = name.partition("-")
            if name == "flag":
                from FlagEmbedding import FlagReranker

                fr = FlagReranker(str(path), use_fp16=dtype != "fp32", devices=[dev if dev == "cpu" else "cuda:0"])
                call = lambda fr=fr: fr.compute_score(lat_pairs)  # noqa: E731
                reps = 20
            else:
                r = crossrank_runner(path, dev, own_dtype or dtype, base, args.budget)
                call = lambda r=r: r.rerank(query, passages)  # noqa: E731
                reps = 50
            for _ in range(3):
                call()
            times = [timed(dev, call)[1] for _ in range(reps)]
            lat[name] = {"median_ms": round(1000 * statistics.median(times), 1), "runs": reps}
            print("latency", name, lat[name], flush=True)
        result["latency"] = lat

    if "long" in modes:
        from crossrank.core.tokenize import PairEncoder

        long_pairs = make_pairs(random.Random(7), words, max(1, args.long_pairs // 32), 32, 560, 0.7, 8000)
        enc = PairEncoder(tokenizer, max_length=8192)
        encoded = enc.encode(long_pairs)
        long_lens = [len(e) for e in encoded]
        lg: dict[str, Any] = {"pairs": len(encoded), "mean_tokens": round(statistics.mean(long_lens), 1),
                              "max_tokens": max(long_lens)}
        lg["packed"] = safe(lambda: model_only("packed", encoded, 65536, repeat=1))
        print("long packed", lg["packed"], flush=True)
        lg["padded_64k"] = safe(lambda: model_only("padded", encoded, 65536, repeat=1))
        print("long padded_64k", lg["padded_64k"], flush=True)
        lg["flag_like_batch128"] = safe(lambda: model_only("padded", encoded, 10**9, max_batch_size=128,
                                                            repeat=1))
        print("long flag_like", lg["flag_like_batch128"], flush=True)
        r = crossrank_runner(path, dev, dtype, "packed", 65536, max_length=8192)
        r.score(long_pairs[:8], normalize=False)
        _, secs = timed(dev, lambda: r.score(long_pairs, normalize=False))
        lg["packed_e2e"] = {"pairs_per_s": round(len(long_pairs) / secs, 1)}
        if "pairs_per_s" in lg["packed"] and "pairs_per_s" in lg["flag_like_batch128"]:
            lg["speedup_vs_flag_like"] = round(lg["packed"]["pairs_per_s"] / lg["flag_like_batch128"]["pairs_per_s"], 2)
        print("long", lg["packed_e2e"], lg.get("speedup_vs_flag_like"), flush=True)
        result["long"] = lg

    emit(result, args.json)


if __name__ == "__main__":
    main()
