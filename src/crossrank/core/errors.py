"""Errors crossrank raises. Each says what went wrong and how to fix it."""

from __future__ import annotations


class CrossrankError(Exception):
    """Base class of every error crossrank raises on purpose."""


class ModelNotFoundError(CrossrankError, FileNotFoundError):
    """The model could not be found locally and could not be downloaded."""


class NotARerankerError(CrossrankError, ValueError):
    """The weights are not a one-logit sequence-classification cross-encoder (e.g. an embedding model)."""


class DeviceError(CrossrankError, RuntimeError):
    """The requested device or dtype is not available on this machine."""


class OutOfMemoryError(CrossrankError, RuntimeError):
    """A single pair does not fit in accelerator memory even when scored alone."""


class ScoreError(CrossrankError, ArithmeticError):
    """The model produced NaN or infinite scores."""
