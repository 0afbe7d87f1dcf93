"""Wake-on-LAN, shared by every handler that has guacd's ``wol-*`` parameters.

guacd sends one magic packet before connecting and, when ``wol-wait-time`` is set,
waits that long and retries the connection up to ``RETRIES`` times.
"""

from __future__ import annotations

import logging
import socket

from guacr.contract.params import Params

RETRIES = 5


def magic_packet(mac: str) -> bytes:
    """6 x 0xFF then the MAC address 16 times; raises ValueError for a bad address."""
    raw = bytes.fromhex(mac.replace(":", "").replace("-", "").replace(".", ""))
    if len(raw) != 6:
        raise ValueError(f"not a MAC address: {mac!r}")
    return b"\xff" * 6 + raw * 16


def send_from_params(
    params: Params, log: logging.Logger | logging.LoggerAdapter[logging.Logger]
) -> bool:
    """Send the packet the ``wol-*`` parameters describe; True if it went out."""
    mac = params.get_opt("wol-mac-addr")
    if mac is None:
        log.warning("Wake-on-LAN requested without wol-mac-addr: not sent.")
        return False
    try:
        packet = magic_packet(mac)
    except ValueError:
        log.warning("Invalid wol-mac-addr: Wake-on-LAN packet not sent.")
        return False
    broadcast = params.get("wol-broadcast-addr") or "255.255.255.255"
    port = params.get_int("wol-udp-port", 9)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            s.sendto(packet, (broadcast, port))
    except OSError as exc:
        log.warning("Wake-on-LAN packet could not be sent: %s", exc)
        return False
    log.info("Wake-on-LAN packet sent to %s:%d.", broadcast, port)
    return True


def connect_attempts(params: Params) -> int:
    """How many connection attempts guacd makes given the ``wol-*`` parameters."""
    waits = params.get_bool("wol-send-packet") and params.get_int("wol-wait-time", 0) > 0
    return RETRIES if waits else 1
