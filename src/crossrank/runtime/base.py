"""What every runtime offers: encoded sequences in, a future of their logits out."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from crossrank.core.tokenize import EncodedPair


class Runtime(Protocol):
    """One device in this process (:class:`~crossrank.runtime.device.DeviceRuntime`) or several in worker processes
    (:class:`~crossrank.runtime.processes.ProcessRuntime`): the library's slices and the service's batches both go
    through :meth:`submit`, and the same sequences give the same batches, so the same scores, on either."""

    @property
    def devices(self) -> list[str]: ...

    @property
    def padded(self) -> bool:
        """Whether a batch costs its longest sequence times its count (padding counted) or the sum of its lengths."""
        ...

    @property
    def backend_name(self) -> str: ...

    @property
    def in_flight_limit(self) -> int:
        """Submissions in flight beyond which :meth:`submit` waits: a caller that batches (the service's engine)
        holds its work back at this many, so what arrives meanwhile still joins its next batch."""
        ...

    def submit(self, encoded: Sequence[EncodedPair], max_batch_tokens: int | None = None) -> Future[list[float]]:
        """Score ``encoded`` in batches under ``max_batch_tokens`` (default: the runtime's); the future holds one logit
        per sequence in input order, or the error. May wait while the runtime has enough in flight."""
        ...

    def close(self) -> None: ...
