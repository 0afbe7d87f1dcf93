"""Wake-on-LAN packets (guacd's ``wol-*`` parameters); the order of waking and
connecting is :func:`guacr.services.upstream.connect`'s job."""

from __future__ import annotations

import socket
from dataclasses import dataclass

from guacr.contract.params import Params
from guacr.contract.peers import Log
from guacr.errors import GuacrError
from guacr.protocol.status import Status

RETRIES = 5  # guacd's GUAC_WOL_DEFAULT_CONNECT_RETRIES


def magic_packet(mac: str) -> bytes:
    """6 x 0xFF then the MAC address 16 times; raises ValueError for a bad address."""
    raw = bytes.fromhex(mac.replace(":", "").replace("-", "").replace(".", ""))
    if len(raw) != 6:
        raise ValueError(f"not a MAC address: {mac!r}")
    return b"\xff" * 6 + raw * 16


@dataclass(frozen=True)
class WakeOnLan:
    """What the ``wol-*`` parameters ask for."""

    mac: str
    broadcast: str = "255.255.255.255"
    port: int = 9
    wait: int = 0  # seconds between connection attempts after the packet (0: none)

    @classmethod
    def from_params(cls, params: Params, log: Log) -> WakeOnLan | None:
        """None unless ``wol-send-packet`` is set; without ``wol-mac-addr`` guacd
        disables Wake-on-LAN with a warning."""
        if not params.get_bool("wol-send-packet"):
            return None
        mac = params.get_opt("wol-mac-addr")
        if mac is None:
            log.warning("Wake-on-LAN requested without wol-mac-addr: it is disabled.")
            return None
        return cls(
            mac,
            params.get("wol-broadcast-addr") or "255.255.255.255",
            params.get_int("wol-udp-port", 9),
            max(0, params.get_int("wol-wait-time", 0)),
        )

    def send(self, log: Log) -> None:
        """Send the magic packet; a packet that cannot be sent fails the connection."""
        try:
            packet = magic_packet(self.mac)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
                s.sendto(packet, (self.broadcast, self.port))
        except (ValueError, OSError) as exc:
            log.error("Failed to send Wake-on-LAN packet: %s", exc)
            raise GuacrError("Failed to send Wake-on-LAN packet.", Status.SERVER_ERROR) from None
        log.info("Wake-on-LAN packet sent to %s:%d.", self.broadcast, self.port)
