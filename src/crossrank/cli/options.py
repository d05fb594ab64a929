"""Typer options shared by every command that loads a model; each also reads a ``CROSSRANK_*`` environment variable."""

from __future__ import annotations

from typing import Annotated

import typer

from crossrank.core.settings import DEFAULT_MODEL, ModelSettings, env_var

_D = ModelSettings()

Model = Annotated[str, typer.Option("--model", "-m", envvar=env_var("model"),
                                    help="Local directory, ./models/<name>, or Hugging Face id of a cross-encoder.")]
Device = Annotated[str, typer.Option(envvar=env_var("device"), help="auto | cpu | cuda | cuda:N | mps.")]
Dtype = Annotated[str, typer.Option(envvar=env_var("dtype"),
                                    help="auto (fp16 on GPU, fp32 on CPU) | fp32 | fp16 | bf16.")]
MaxLength = Annotated[int, typer.Option(envvar=env_var("max_length"),
                                        help="Tokens per (query, passage) pair, up to the model's limit.")]
MaxBatchTokens = Annotated[int, typer.Option(envvar=env_var("max_batch_tokens"),
                                             help="Token budget of one batch (padding counted on padded backends); "
                                                  "0: 32768 on GPU, 2048 on CPU.")]
Backend = Annotated[str, typer.Option(envvar=env_var("backend"),
                                      help="auto | packed (no padding; XLM-R/BERT family) | padded (any HF model).")]
LongPassages = Annotated[str, typer.Option(envvar=env_var("long_passages"),
                                           help="truncate (like FlagReranker) | chunk (score windows, keep the best).")]
Devices = Annotated[str, typer.Option(envvar=env_var("devices"),
                                      help="Several GPUs of this host, one model replica and worker each: all | 0,1 "
                                           "| cuda:0,cuda:1 (replaces --device).")]
ModelsDir = Annotated[str, typer.Option(envvar=env_var("models_dir"), help="Folder searched for ./models/<name>.")]


def model_settings(model: str = DEFAULT_MODEL, device: str = _D.device, dtype: str = _D.dtype,
                   max_length: int = _D.max_length, max_batch_tokens: int = _D.max_batch_tokens,
                   backend: str = _D.backend, long_passages: str = _D.long_passages,
                   models_dir: str = _D.models_dir) -> ModelSettings:
    return ModelSettings(model=model, device=device, dtype=dtype, max_length=max_length,
                         max_batch_tokens=max_batch_tokens, backend=backend, long_passages=long_passages,
                         models_dir=models_dir)
