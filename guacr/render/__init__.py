"""guacr.render."""
