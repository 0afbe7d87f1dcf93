"""RDP: aardwolf (with guacr's fixes) + the shared display engine and services."""

import warnings

from cryptography.utils import CryptographyDeprecationWarning

# The SFTP side channel imports asyncssh, which names cryptography's deprecated DSA
# classes: silence exactly those warnings (as guacr.handlers.ssh does), before the import.
warnings.filterwarnings(
    "ignore",
    message="DSA is deprecated",
    category=CryptographyDeprecationWarning,
    module=r"asyncssh\.",
)
