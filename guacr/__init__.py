"""guacr: a drop-in replacement for Apache guacd."""

__version__ = "0.1.0"
