"""The command line (`coincast`): parses, calls the library, prints."""

from coincast.cli.main import app, main

__all__ = ["app", "main"]
