"""crossrank: a local cross-encoder reranking engine that scores exactly like FlagReranker, faster.

``Reranker`` is imported on first use, so that processes which need no model (the tokenizer processes of
:mod:`crossrank.runtime`) start without loading torch.
"""

from typing import TYPE_CHECKING, Any

from crossrank.core.errors import (
    CrossrankError,
    DeviceError,
    ModelNotFoundError,
    NotARerankerError,
    OutOfMemoryError,
    ScoreError,
)
from crossrank.core.ranking import RerankResult

if TYPE_CHECKING:
    from crossrank.reranker import Reranker

__version__ = "0.1.0"

__all__ = [
    "CrossrankError",
    "DeviceError",
    "ModelNotFoundError",
    "NotARerankerError",
    "OutOfMemoryError",
    "RerankResult",
    "Reranker",
    "ScoreError",
    "__version__",
]


def __getattr__(name: str) -> Any:
    if name == "Reranker":
        from crossrank.reranker import Reranker

        return Reranker
    raise AttributeError(f"module 'crossrank' has no attribute {name!r}")
