"""Several instances: what a join through a forwarding instance costs.

    python benchmarks/bench_cluster.py [--owner HOST:PORT --via HOST:PORT] [--joins N]
                                       [--echoes N] [--protocol P --arg NAME=VALUE ...]
                                       [--tls]

A session is opened on the owner instance; then, alternating so both see the same
machine load:

* join latency: connect, ``select $id``, ``args``, the client's answers, ``ready``,
  directly at the owner vs through the forwarding instance (whose listener finds the
  owner in the shared registry and relays the bytes);
* echo latency: a ``key`` sent by a user joined directly vs one joined through the
  forwarding instance, until the test ``echo`` handler's ``name "key ..."`` comes back
  to that user (needs the echo handler: in ``--local`` mode, or a guacr started with
  ``GUACR_HANDLERS=echo=tests.echo_handler:EchoHandler``).

Without --owner/--via (``--local``), a real redis-server and two guacr instances (one
worker each, the echo handler) are started on loopback from the test helpers and
stopped afterwards. ``--tls``: clients speak TLS to 4822 (not verifying, as a test
client); in ``--local`` mode the instances then run with one shared certificate
(-C/-K), so the forwarding instance also relays to the owner over TLS. The machine is
shared and noisy: compare the ratios of one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from guacr_process import Client  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


class Target:
    """A guacd-compatible host:port (over TLS with ``tls``)."""

    def __init__(self, host: str, port: int, tls: bool = False) -> None:
        self.host, self.port, self.tls = host, port, tls

    def client(self) -> Client:
        import socket
        import ssl

        sock = socket.create_connection((self.host, self.port), timeout=20)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            sock = ctx.wrap_socket(sock, server_hostname=self.host)
        return Client(self.port, 20, sock=sock)


@contextmanager
def local_cluster(tls: bool = False) -> Iterator[tuple[Target, Target]]:
    """redis-server + two guacr instances on loopback (the test helpers)."""
    from guacr_process import run_guacr
    from servers.certs import make_server_tls
    from servers.redis import RedisServer

    with ExitStack() as stack:
        redis = stack.enter_context(RedisServer())
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        door: list[str] = []
        if tls:
            files = make_server_tls(tmp / "pki")
            door = ["-C", str(files.cert), "-K", str(files.key)]
        env = {
            "GUACR_REGISTRY_URL": redis.url,
            "GUACR_METRICS_BIND_PORT": "0",
            "GUACR_GRPC_BIND_PORT": "0",
            "GUACR_WEBSOCKET_BIND_PORT": "0",
        }
        found = []
        for name in ("owner", "via"):
            (tmp / name).mkdir()
            g = stack.enter_context(run_guacr(tmp / name, workers=1, env=env, extra=door))
            found.append(Target("127.0.0.1", g.port, tls))
        yield found[0], found[1]


def join(target: Target, conn_id: str, values: dict[str, str]) -> tuple[Client, float]:
    """A joined client and how long connect-to-``ready`` took (s)."""
    t0 = time.perf_counter()
    c = target.client()
    got = c.handshake(conn_id, values)
    elapsed = time.perf_counter() - t0
    assert got == conn_id, got
    return c, elapsed


def echo_once(c: Client, n: int) -> float:
    marker = f"key {n} 1"
    t0 = time.perf_counter()
    c.send("key", n, 1)
    c.names_until(marker, timeout=20)
    return time.perf_counter() - t0


def line(label: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (
        f"  {label:<22} median {statistics.median(ms):7.2f} ms   p95 {pct(ms, 0.95):7.2f} ms"
        f"   n={len(ms)}"
    )


def keep_alive(c: Client) -> None:
    """Answer the owner's ``sync``s (a silent client is dropped after 15 s, as by guacd)."""
    try:
        while (ins := c.read(None)) is not None:
            if ins[0] == "sync":
                c.send("sync", ins[1])
    except OSError:
        pass


def run(owner: Target, via: Target, args: argparse.Namespace) -> None:
    values = dict(a.split("=", 1) for a in args.arg)
    session = owner.client()
    conn_id = session.handshake(args.protocol, values)
    session.sock.settimeout(None)
    threading.Thread(target=keep_alive, args=(session,), daemon=True).start()
    time.sleep(0.5)  # the owner's first registry write (a few ms) is surely done
    print(
        f"session {conn_id} on {owner.host}:{owner.port}; via {via.host}:{via.port}"
        + (" (TLS)" if owner.tls else "")
    )
    print(f"load average before: {os.getloadavg()}")

    direct: list[float] = []
    relayed: list[float] = []
    for i in range(args.joins):
        order = [(owner, direct), (via, relayed)]
        for target, out in order if i % 2 else order[::-1]:
            c, t = join(target, conn_id, values)
            out.append(t)
            c.close()
    print("join latency (connect .. ready):")
    print(line("direct to the owner", direct))
    print(line("through forwarding", relayed))
    print(f"  ratio (median) {statistics.median(relayed) / statistics.median(direct):.2f}")

    if args.protocol == "echo" and args.echoes:
        a, _ = join(owner, conn_id, values)
        b, _ = join(via, conn_id, values)
        e_direct: list[float] = []
        e_relayed: list[float] = []
        for i in range(args.echoes):
            pairs = [(a, e_direct), (b, e_relayed)]
            for k, (c, out) in enumerate(pairs if i % 2 else pairs[::-1]):
                out.append(echo_once(c, 1000 + 2 * i + k))
        print("echo latency (key sent .. its echo back, joined user):")
        print(line("joined directly", e_direct))
        print(line("joined via forwarding", e_relayed))
        print(f"  ratio (median) {statistics.median(e_relayed) / statistics.median(e_direct):.2f}")
        a.close()
        b.close()
    session.close()
    print(f"load average after: {os.getloadavg()}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--owner", help="HOST:PORT of the instance to open the session on")
    p.add_argument("--via", help="HOST:PORT of another instance of the same registry")
    p.add_argument("--joins", type=int, default=200)
    p.add_argument("--echoes", type=int, default=500)
    p.add_argument("--protocol", default="echo")
    p.add_argument("--arg", action="append", default=[], help="NAME=VALUE connect argument")
    p.add_argument("--tls", action="store_true", help="TLS on 4822 (see above)")
    args = p.parse_args()
    if bool(args.owner) != bool(args.via):
        p.error("--owner and --via go together")
    if args.owner:
        run(Target(*address(args.owner), args.tls), Target(*address(args.via), args.tls), args)
        return
    with local_cluster(args.tls) as (owner, via):
        run(owner, via, args)


if __name__ == "__main__":
    main()
