"""The declared contract between the core (``guacr.server``) and everything below it.

* :mod:`~guacr.contract.peers`: what handlers, the display engine, the terminal front
  end and the shared services may use of a connection and of a user (Protocols).
* :mod:`~guacr.contract.handler`: what a protocol handler implements (``Handler``).
* The shared vocabulary: connection parameters (:class:`Params`) and protocol
  timestamps (:func:`monotonic_ms`).

Layering (checked by import-linter in ``scripts/test``, bottom up): ``protocol``;
this package with ``errors``/``files``/``native_build``; ``render`` and ``terminal``;
``services`` and ``frontend``; ``handlers``; ``server``; ``cli``. Nothing here imports
from a layer above.
"""

from guacr.contract.clock import monotonic_ms
from guacr.contract.handler import Handler, StreamSink
from guacr.contract.params import SECRET_NAMES, Param, Params, params
from guacr.contract.peers import Connection, IndexAllocator, Log, User

__all__ = [
    "SECRET_NAMES",
    "Connection",
    "Handler",
    "IndexAllocator",
    "Log",
    "Param",
    "Params",
    "StreamSink",
    "User",
    "monotonic_ms",
    "params",
]
