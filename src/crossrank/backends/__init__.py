"""Ways of running the network, behind one small protocol (:class:`crossrank.backends.base.Backend`)."""

from crossrank.backends.base import Backend, create_backend

__all__ = ["Backend", "create_backend"]
