"""``User.peer``: the client's address for logs and the database audit (contract member)."""

from __future__ import annotations

from guacr_process import ECHO

from guacr.config import Config
from guacr.server import channel
from guacr.server.user import User
from guacr.server.worker import Worker


class FakeTransport:
    def __init__(self, peername: object) -> None:
        self.peername = peername

    def get_extra_info(self, name: str, default: object = None) -> object:
        return self.peername if name == "peername" else default


class Link:
    """A Link whose transport reports ``peername``, as StreamAdapter's does."""

    def __init__(self, peername: object) -> None:
        self.transport = FakeTransport(peername)

    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


async def test_peer_is_host_and_port_from_the_transport_else_the_listeners_host() -> None:
    _ours, theirs = channel.pair()
    worker = Worker(theirs, Config(handlers=ECHO))
    user = User(worker, "echo", user_id="@p", remote="10.0.0.5")
    assert user.peer == "10.0.0.5"  # no socket at hand yet: what the listener saw
    user.attach(Link(("127.0.0.1", 40001)))  # type: ignore[arg-type]
    assert user.peer == "127.0.0.1:40001"
    user.attach(Link(("::1", 40002, 0, 0)))  # type: ignore[arg-type]
    assert user.peer == "[::1]:40002"
    user.attach(Link(None))  # type: ignore[arg-type]
    assert user.peer == "10.0.0.5"
