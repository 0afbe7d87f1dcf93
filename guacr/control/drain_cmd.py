"""``guacr drain [--wait S]``: put the local instance in drain mode (Kubernetes preStop).

Calls ``guacr.v1.Control/Drain`` on the configured gRPC address with the configured
credentials, then with ``--wait`` polls ``GetStatus`` until no session is left or S
seconds passed. Exit status: 0 drained (or not waiting), 1 the call failed, 2 sessions
still live when the wait ended. ``--resume`` undoes a drain; ``--status`` only prints.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import grpc

from guacr.control.v1 import control_pb2 as pb
from guacr.control.v1 import control_pb2_grpc


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="guacr drain", description=__doc__.splitlines()[0])
    p.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="S",
        help="wait up to S seconds for live sessions to end",
    )
    p.add_argument("--resume", action="store_true", help="leave drain mode instead")
    p.add_argument("--status", action="store_true", help="only print the drain state")
    p.add_argument("--address", help="host:port of the gRPC control API (default: config)")
    p.add_argument("--config", dest="config_path", help="configuration file")
    p.add_argument("--ca", help="CA to verify the server's certificate (TLS)")
    p.add_argument("--client-cert", help="client certificate (mutual TLS)")
    p.add_argument("--client-key", help="client key (mutual TLS)")
    p.add_argument("--server-name", help="name in the server certificate (TLS)")
    return p  # fmt: skip


def _channel(args: argparse.Namespace, config: Any) -> grpc.Channel:
    host = getattr(config, "grpc_bind_host", "") or "127.0.0.1"
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    port = int(getattr(config, "grpc_bind_port", 0) or 50051)
    address = args.address or (f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    if args.ca or args.client_cert or getattr(config, "grpc_cert", None):
        ca = Path(args.ca).read_bytes() if args.ca else None
        key = Path(args.client_key).read_bytes() if args.client_key else None
        cert = Path(args.client_cert).read_bytes() if args.client_cert else None
        options = [("grpc.ssl_target_name_override", args.server_name)] if args.server_name else []
        return grpc.secure_channel(address, grpc.ssl_channel_credentials(ca, key, cert), options)
    return grpc.insecure_channel(address)


def _show(st: pb.InstanceStatus) -> str:
    state = "draining" if st.draining else "serving"
    return (
        f"{state}: {st.sessions} session(s), {st.users} user(s), "
        f"{st.workers_ready}/{st.workers} workers ready"
    )


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from guacr.config import load

    config = load(args.config_path)
    token = getattr(config, "grpc_token", None) or os.environ.get("GUACR_GRPC_TOKEN")
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    with _channel(args, config) as channel:
        stub = control_pb2_grpc.ControlStub(channel)  # type: ignore[no-untyped-call]
        try:
            if args.status:
                st = stub.GetStatus(pb.GetStatusRequest(), metadata=metadata, timeout=10)
            elif args.resume:
                st = stub.Resume(pb.ResumeRequest(), metadata=metadata, timeout=10)
            else:
                st = stub.Drain(pb.DrainRequest(), metadata=metadata, timeout=10)
            print(_show(st), flush=True)
            deadline = time.monotonic() + args.wait
            while (
                not args.resume and not args.status and st.sessions and time.monotonic() < deadline
            ):
                time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))
                st = stub.GetStatus(pb.GetStatusRequest(), metadata=metadata, timeout=10)
            if args.wait and not args.resume and not args.status:
                print(_show(st), flush=True)
                if st.sessions:
                    return 2
        except grpc.RpcError as exc:
            print(f"guacr drain: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    return 0
