"""The engine's errors: plain exceptions, which the server maps to status codes."""

from __future__ import annotations

from crossrank.core.errors import CrossrankError


class QueueFullError(CrossrankError):
    """The engine holds ``max_queued_pairs`` pairs already; try again shortly."""


class RequestTooLargeError(CrossrankError, ValueError):
    """One request has more pairs than the engine's queue can ever hold."""


class InputTooLongError(CrossrankError, ValueError):
    """A passage does not fit in ``max_length`` and the caller asked for no truncation."""


class EngineNotRunningError(CrossrankError, RuntimeError):
    """The engine has not been started, or is stopping."""


class QueueTimeoutError(CrossrankError):
    """A request could not start within ``max_queue_seconds``; ``retry_after`` is a hint in seconds."""

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after
