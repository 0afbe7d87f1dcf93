"""SSH: asyncssh client + shared terminal session + SFTP filesystem object."""

import warnings

from cryptography.utils import CryptographyDeprecationWarning

# asyncssh names cryptography's DSA classes in its type hints, and cryptography deprecates
# DSA: every start printed ten lines of warnings an operator can do nothing about. Only
# those (DSA, raised inside asyncssh) are silenced; the filter must precede the import.
warnings.filterwarnings(
    "ignore",
    message="DSA is deprecated",
    category=CryptographyDeprecationWarning,
    module=r"asyncssh\.",
)

from guacr.handlers.ssh.handler import SSH_ARGS, SSHHandler  # noqa: E402

__all__ = ["SSH_ARGS", "SSHHandler"]
