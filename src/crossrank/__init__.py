"""crossrank: a local cross-encoder reranking engine that scores exactly like FlagReranker, faster."""

from crossrank.errors import (
    CrossrankError,
    DeviceError,
    ModelNotFoundError,
    NotARerankerError,
    OutOfMemoryError,
    ScoreError,
)
from crossrank.ranking import RerankResult
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
