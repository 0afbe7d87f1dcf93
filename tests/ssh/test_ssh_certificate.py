"""guacd's ``public-key``: an OpenSSH user certificate for ``private-key``, against an
sshd trusting an ed25519 user CA (``TrustedUserCAKeys``); the key alone is not
authorized, so only the certificate gets it in."""

from __future__ import annotations

from pathlib import Path

from servers import SSHServer
from ssh.test_ssh import logged_in, wait_file


def test_certificate_authentication(connect, sshd: SSHServer, shared_dir: Path) -> None:
    key = sshd.keys["ed25519_cert"].read_text()
    cert = sshd.certificates["ed25519_cert"].read_text()
    with connect(password="", **{"private-key": key, "public-key": cert}) as term:
        logged_in(term)
        out = shared_dir / "cert-ok"
        term.run(f"echo certified > {out}")
        assert wait_file(out, term=term) == "certified\n"


def test_key_without_its_certificate_is_refused(connect, sshd: SSHServer) -> None:
    key = sshd.keys["ed25519_cert"].read_text()
    with connect(password="", **{"private-key": key}) as term:
        err = term.wait_for("error", timeout=20)
        assert err[2] == "769" and "Public key authentication failed" in err[1], err


def test_unreadable_certificate_is_refused(connect, sshd: SSHServer) -> None:
    key = sshd.keys["ed25519_cert"].read_text()
    with connect(
        password="", **{"private-key": key, "public-key": "ssh-ed25519-cert-v01@openssh.com AAAA"}
    ) as term:
        err = term.wait_for("error", timeout=20)
        assert err[2] == "769" and "public key" in err[1], err
