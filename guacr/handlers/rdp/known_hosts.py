"""RDP server certificates remembered for ``cert-tofu`` (trust on first use).

guacd leaves this to FreeRDP, which keeps ``known_hosts2`` in the configuration
directory of guacd's user: with certificate checking on, a server whose certificate is
recorded there is trusted, a changed one is refused, and with ``cert-tofu`` an unknown
one is accepted and recorded. guacr does the same with its own file:

* ``$GUACR_RDP_KNOWN_HOSTS`` if set, else ``$XDG_CONFIG_HOME/guacr/rdp-known-hosts``,
  else ``~/.config/guacr/rdp-known-hosts`` (the home of the user guacr runs as);
* one line per server, ``<host> <port> <sha256 fingerprint>`` (colon-separated hex,
  like FreeRDP's), ``#`` comments allowed; an operator may edit or pre-fill it
  (remove a line to trust a server's new certificate);
* read under a shared ``flock``, appended to under an exclusive one (workers share it).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from enum import Enum
from pathlib import Path

ENV = "GUACR_RDP_KNOWN_HOSTS"


class Verdict(Enum):
    KNOWN = "known"  # recorded with this certificate
    CHANGED = "changed"  # recorded with another certificate: refused
    ADDED = "added"  # unknown, recorded now (cert-tofu)
    UNKNOWN = "unknown"  # unknown, not recorded (no cert-tofu)


def default_path() -> Path:
    """Where the store lives (see the module docstring)."""
    explicit = os.environ.get(ENV)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "guacr" / "rdp-known-hosts"


def fingerprint(der: bytes) -> str:
    """SHA-256 of the DER certificate, ``aa:bb:...`` (lower case)."""
    digest = hashlib.sha256(der).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def _parse(text: str) -> dict[tuple[str, int], str]:
    entries: dict[tuple[str, int], str] = {}
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) >= 3 and fields[1].isdigit():
            entries[(fields[0].lower(), int(fields[1]))] = fields[2].lower()
    return entries


def check(path: Path, host: str, port: int, der: bytes, tofu: bool) -> Verdict:
    """Look ``host``:``port``'s certificate up in the store at ``path``, recording it
    when unknown and ``tofu``. Blocking file I/O: run it in a thread. Raises OSError
    when the store cannot be read or written (FreeRDP then refuses the certificate)."""
    key = (host.lower(), port)
    seen = fingerprint(der)
    if tofu:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        f = open(path, "a+" if tofu else "r", encoding="utf-8")  # noqa: SIM115
    except FileNotFoundError:
        return Verdict.UNKNOWN
    with f:
        fcntl.flock(f, fcntl.LOCK_EX if tofu else fcntl.LOCK_SH)
        f.seek(0)
        text = f.read()
        stored = _parse(text).get(key)
        if stored is not None:
            return Verdict.KNOWN if stored == seen else Verdict.CHANGED
        if not tofu:
            return Verdict.UNKNOWN
        sep = "" if not text or text.endswith("\n") else "\n"
        f.write(f"{sep}{key[0]} {port} {seen}\n")  # appended under the lock
        f.flush()
        os.fsync(f.fileno())
    return Verdict.ADDED
