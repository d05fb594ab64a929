"""The model options, defined once: :func:`model_options` adds them to a command and hands it one ``ModelSettings``.

Each option also reads a ``CROSSRANK_*`` environment variable. The modes' choices come from the ``Literal`` types of
:mod:`crossrank.core.settings`, so typer lists them in ``--help`` and refuses anything else.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from enum import Enum
from typing import Annotated, Any, TypeVar

import typer

from crossrank.core.settings import BACKENDS, DTYPES, LONG_PASSAGES, ModelSettings, env_var

F = TypeVar("F", bound=Callable[..., Any])
_D = ModelSettings()
SETTINGS_PARAMETER = "settings"


def _choices(name: str, values: tuple[str, ...]) -> Any:
    """A str Enum of ``values``, which typer shows as ``[a|b|c]`` and checks."""
    make: Any = Enum
    return make(name, [(v, v) for v in values], type=str)


DtypeChoice = _choices("Dtype", DTYPES)
BackendChoice = _choices("Backend", BACKENDS)
LongPassagesChoice = _choices("LongPassages", LONG_PASSAGES)


def _option(setting: str, *names: str, help: str) -> typer.models.OptionInfo:
    return typer.Option(*names, envvar=env_var(setting), help=help)


OPTIONS: dict[str, tuple[Any, Any]] = {
    "model": (Annotated[str, _option("model", "--model", "-m", help="Local directory, ./models/<name>, or Hugging "
                                     "Face id of a cross-encoder.")], _D.model),
    "device": (Annotated[str, _option("device", help="auto | cpu | cuda | cuda:N | mps.")], _D.device),
    "devices": (Annotated[str, _option("devices", help="Several GPUs of this host, one model replica and worker "
                                       "each: all | 0,1 | cuda:0,cuda:1 (replaces --device).")], _D.devices),
    "dtype": (Annotated[DtypeChoice, _option("dtype", help="auto: fp16 on GPU, fp32 on CPU. On the CPU bf16 (needs "
                                             "AVX-512 BF16 or AMX) and int8 (VNNI or AMX) run the linears in that "
                                             "precision.")],
              DtypeChoice(_D.dtype)),
    "max_length": (Annotated[int, _option("max_length", help="Tokens per (query, passage) pair, up to the model's "
                                          "limit.")], _D.max_length),
    "max_batch_tokens": (Annotated[int, _option("max_batch_tokens", help="Token budget of one batch (padding "
                                                "counted on padded backends); 0: 32768 on GPU, 2048 on CPU.")],
                         _D.max_batch_tokens),
    "backend": (Annotated[BackendChoice, _option("backend", help="packed: no padding (XLM-R/BERT family); padded: "
                                                 "any HF model.")], BackendChoice(_D.backend)),
    "long_passages": (Annotated[LongPassagesChoice, _option("long_passages", help="truncate (like FlagReranker) | "
                                                            "chunk (score windows, keep the best).")],
                      LongPassagesChoice(_D.long_passages)),
    "models_dir": (Annotated[str, _option("models_dir", help="Folder searched for ./models/<name>.")], _D.models_dir),
}
"""Each shared option: its annotation (with the typer option) and its default, keyed by its ModelSettings field."""


def settings_from(values: dict[str, Any]) -> ModelSettings:
    """The options' values (enum members or plain values) as one ModelSettings."""
    return ModelSettings(**{k: v.value if isinstance(v, Enum) else v for k, v in values.items()})


def model_options(*, devices: bool = False) -> Callable[[F], F]:
    """Add the shared model options (``--devices`` too where asked) to a typer command whose signature has a
    ``settings: ModelSettings`` parameter; the command receives them as that one object.

    >>> @model_options()
    ... def score(query: str, settings: ModelSettings) -> None: ...
    """
    names = [n for n in OPTIONS if devices or n != "devices"]

    def decorate(command: F) -> F:
        signature = inspect.signature(command, eval_str=True)
        if SETTINGS_PARAMETER not in signature.parameters:
            raise TypeError(f"{command.__name__} needs a parameter {SETTINGS_PARAMETER!r} to take the model options")
        own = [p for p in signature.parameters.values() if p.name != SETTINGS_PARAMETER]
        shared = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, annotation=OPTIONS[n][0],
                                    default=OPTIONS[n][1]) for n in names]

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> Any:
            settings = settings_from({n: kwargs.pop(n) for n in names})
            return command(**kwargs, **{SETTINGS_PARAMETER: settings})

        params = own + shared
        wrapper.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        return wrapper  # type: ignore[return-value]

    return decorate
