"""SSH: asyncssh client + shared terminal session + SFTP filesystem object."""

from guacr.handlers.ssh.handler import SSH_ARGS, SSHHandler

__all__ = ["SSH_ARGS", "SSHHandler"]
