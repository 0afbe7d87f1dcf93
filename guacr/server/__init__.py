"""guacr.server."""
