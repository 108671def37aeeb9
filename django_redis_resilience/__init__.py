"""Keeps Django sites working when Redis fails."""

__version__ = "0.1.0.dev0"
