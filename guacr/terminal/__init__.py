"""guacr.terminal."""
