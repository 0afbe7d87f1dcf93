"""SSH over the WebSocket door (4823) against the same over TCP (4822), in one run.

    python benchmarks/bench_websocket.py --local [--tls] [--rounds 3] [--keys 300] [--lines N]
    python benchmarks/bench_websocket.py --guacd HOST:4822 --ws HOST:4823 [--tls] \\
        --token-key KEY --ssh-host H --ssh-port P --ssh-user U --ssh-password PW

``--tls`` compares ``wss`` with TLS on 4822 (both doors encrypted, the certificate not
checked); ``--local --tls`` starts guacr with a self-signed certificate for both.

Each round measures, alternating the doors so drift on a shared machine hits both:

* ``echo``: keystroke-to-screen latency (x / BackSpace in a shell), p50/p99 over --keys;
* ``bulk``: ``seq 1 N; exit`` typed, wall time until the session ends; throughput is
  what the client received per second.

The WebSocket client behaves like guacamole-common-js (one instruction per text
message, ``sync`` answered) and uses a guacr token minted with --token-key (the
server's ``token_key``). Target: WebSocket adds <= 0.3 ms to the echo p50 and keeps
>= 90 % of the TCP bulk throughput. ``--local`` starts sshd and guacr (2 workers, door
open) from the test helpers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_ssh import GuacClient, Target, echo_latencies, pct  # noqa: E402
from websockets.client import ClientProtocol  # noqa: E402
from websockets.frames import Frame, Opcode  # noqa: E402
from websockets.protocol import State  # noqa: E402
from websockets.typing import Subprotocol  # noqa: E402
from websockets.uri import parse_uri  # noqa: E402

from guacr.protocol.instruction import encode_str  # noqa: E402
from guacr.tunnel.tokens import GuacrTokens  # noqa: E402

SIZE = (1024, 768, 96)


class WsGuacClient(GuacClient):
    """``bench_ssh.GuacClient`` over a WebSocket tunnel (same reading and timing).

    Built on websockets' sans-I/O ``ClientProtocol`` over asyncio streams, so a send is a
    plain synchronous write as on TCP and the client adds as little as it can: what is
    measured is the door, not a client library's task switching.
    """

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, proto: ClientProtocol
    ) -> None:
        super().__init__(reader, writer)
        self.proto = proto
        self.tunnel_id = ""

    @classmethod
    async def open_tunnel(cls, url: str) -> WsGuacClient:
        wsuri = parse_uri(url)
        reader, writer = await asyncio.open_connection(
            wsuri.host, wsuri.port, limit=1 << 22, ssl=_tls() if wsuri.secure else None
        )
        proto = ClientProtocol(wsuri, subprotocols=[Subprotocol("guacamole")], max_size=None)
        c = cls(reader, writer, proto)
        proto.send_request(proto.connect())
        c._flush()
        first = await c.read()
        assert first is not None and first[0] == "ready", first
        return c

    def _flush(self) -> None:
        for chunk in self.proto.data_to_send():
            if chunk:
                self.writer.write(chunk)

    def send(self, opcode: str, *args: object) -> None:
        if self.proto.state is State.OPEN:
            self.proto.send_text(encode_str(opcode, *args).encode())
            self._flush()

    async def read(self) -> tuple[str, ...] | None:
        while not self.queue:
            data = await self.reader.read(1 << 16)
            if not data:
                self.closed = True
                return None
            self.proto.receive_data(data)
            self._flush()
            for event in self.proto.events_received():
                if not isinstance(event, Frame) or event.opcode is not Opcode.TEXT:
                    continue
                self.bytes_in += len(event.data)
                for ins in self.parser.receive_data(bytes(event.data)):
                    if ins[0] == "":
                        if not self.tunnel_id and len(ins) == 2:
                            self.tunnel_id = ins[1]
                            self.queue.append(("ready", ins[1]))  # the tunnel's id = ready
                        continue
                    self.queue.append(ins)
        ins = self.queue.pop(0)
        if ins[0] == "sync":
            self.send("sync", ins[1])
        return ins

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.send("disconnect")
            self.writer.close()


def _tls() -> ssl.SSLContext:
    """The benchmark's TLS client: encrypted, certificate not checked (self-signed)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Doors:
    def __init__(self, args: argparse.Namespace) -> None:
        self.tcp = Target(args)
        self.tls = args.tls
        host, _, port = args.ws.rpartition(":")
        scheme = "wss" if args.tls else "ws"
        self.ws_base = f"{scheme}://{host or '127.0.0.1'}:{int(port)}{args.ws_path}"
        self.tokens = GuacrTokens(args.token_key)

    async def session(self, door: str) -> GuacClient:
        if door == "tcp" and self.tls:
            reader, writer = await asyncio.open_connection(
                self.tcp.host, self.tcp.port, limit=1 << 22, ssl=_tls()
            )
            c = GuacClient(reader, writer)
            await c.handshake(self.tcp.values, SIZE)
            return c
        if door == "tcp":
            return await self.tcp.session(SIZE)
        token = self.tokens.mint(protocol="ssh", params=self.tcp.values, ttl=60)
        q = {"token": token, "GUAC_WIDTH": SIZE[0], "GUAC_HEIGHT": SIZE[1], "GUAC_DPI": SIZE[2]}
        q["GUAC_IMAGE"] = "image/png"
        return await WsGuacClient.open_tunnel(f"{self.ws_base}?{urlencode(q)}")

    async def logged_in(self, door: str) -> GuacClient:
        c = await self.session(door)
        await c.frame()  # the prompt
        await c.quiet(0.5)
        return c


async def echo(doors: Doors, door: str, keys: int) -> list[float]:
    c = await doors.logged_in(door)
    await echo_latencies(c, 20)  # warm-up: glyphs reach the client's cache
    lat = await echo_latencies(c, keys)
    c.close()
    await asyncio.sleep(0.1)
    return lat


async def bulk(doors: Doors, door: str, lines: int) -> tuple[float, int]:
    c = await doors.logged_in(door)
    before = c.bytes_in
    c.type(f"seq 1 {lines}; exit\n")
    t0 = time.monotonic()
    while True:
        ins = await c.read()
        if ins is None or ins[0] in ("disconnect", "error"):
            break
    elapsed = time.monotonic() - t0
    c.close()
    await asyncio.sleep(0.1)
    return elapsed, c.bytes_in - before


async def run(args: argparse.Namespace) -> None:
    doors = Doors(args)
    name = {"tcp": "tls", "ws": "wss"} if args.tls else {"tcp": "tcp", "ws": "ws"}
    p50: dict[str, list[float]] = {"tcp": [], "ws": []}
    rate: dict[str, list[float]] = {"tcp": [], "ws": []}
    for r in range(1, args.rounds + 1):
        order = ("tcp", "ws") if r % 2 else ("ws", "tcp")
        for door in order:
            lat = await echo(doors, door, args.keys)
            p50[door].append(pct(lat, 0.5))
            print(f"round {r} {name[door]:>3} echo: p50 {pct(lat, 0.5):.3f} ms  "
                  f"p99 {pct(lat, 0.99):.3f} ms  ({len(lat)} keys)", flush=True)  # fmt: skip
        for door in order:
            elapsed, nbytes = await bulk(doors, door, args.lines)
            rate[door].append(args.lines / elapsed)
            print(f"round {r} {name[door]:>3} bulk: seq 1 {args.lines} in {elapsed:.2f} s  "
                  f"{args.lines / elapsed / 1000:.0f} k lines/s  {nbytes / 1000:.0f} KB",
                  flush=True)  # fmt: skip
    dp50 = statistics.median(w - t for w, t in zip(p50["ws"], p50["tcp"], strict=True))
    ratio = statistics.median(w / t for w, t in zip(rate["ws"], rate["tcp"], strict=True))
    t, w = name["tcp"], name["ws"]
    print(
        f"summary ({args.rounds} rounds, medians): echo p50 {t} "
        f"{statistics.median(p50['tcp']):.3f} ms, {w} {statistics.median(p50['ws']):.3f} ms, "
        f"{w} adds {dp50:+.3f} ms (target <= +0.3); bulk {w}/{t} throughput {ratio:.1%} "
        f"(target >= 90%); load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )


@contextlib.contextmanager
def local_servers(args: argparse.Namespace) -> Iterator[None]:
    from servers import SSHServer, _self_signed_cert
    from websocket.doorproc import TOKEN_KEY, start_door

    with SSHServer() as sshd, tempfile.TemporaryDirectory() as tmp:
        extra: list[str] = []
        env: dict[str, str] = {}
        if args.tls:  # -C/-K: TLS on 4822, and the WebSocket door's certificate too
            cert, key = _self_signed_cert(Path(tmp))
            extra = ["-C", str(cert), "-K", str(key)]
            env["GUACR_WEBSOCKET_TLS"] = "true"
        gen = start_door(Path(tmp), workers=2, extra=extra, **env)
        door = next(gen)
        try:
            args.guacd = f"127.0.0.1:{door.tcp_port}"
            args.ws = f"127.0.0.1:{door.ws_port}"
            args.token_key = TOKEN_KEY
            args.ssh_host, args.ssh_port = sshd.host, sshd.port
            args.ssh_user, args.ssh_password = sshd.username, sshd.password
            print(f"local guacr: tcp :{door.tcp_port}, websocket :{door.ws_port}; "
                  f"sshd :{sshd.port}")  # fmt: skip
            yield
        finally:
            gen.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--local", action="store_true", help="start guacr and sshd locally")
    p.add_argument("--guacd", default="127.0.0.1:4822")
    p.add_argument("--ws", default="127.0.0.1:4823")
    p.add_argument("--ws-path", default="/")
    p.add_argument("--tls", action="store_true", help="wss against TLS on 4822")
    p.add_argument("--token-key", default="", help="the server's token_key")
    p.add_argument("--ssh-host", default="127.0.0.1")
    p.add_argument("--ssh-port", type=int, default=22)
    p.add_argument("--ssh-user", default="guest")
    p.add_argument("--ssh-password", default="guest")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--keys", type=int, default=300, help="echo: keys timed per round and door")
    p.add_argument("--lines", type=int, default=1000000, help="bulk: seq count")
    args = p.parse_args()
    with local_servers(args) if args.local else contextlib.nullcontext():
        if not args.token_key:
            p.error("--token-key is needed (the server's token_key)")
        asyncio.run(run(args))


if __name__ == "__main__":
    main()
