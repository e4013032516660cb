"""Tokens: who may change the service (write) and, optionally, who may read it.

The write token comes from `--token-file` or `$COINCAST_TOKEN`; with none, the write routes
answer 403 and say how to set one. The optional read token (`--read-token-file` or
`$COINCAST_READ_TOKEN`) protects the GET routes of /v1 and /metrics (the write token reads too).
Tokens travel as `Authorization: Bearer <token>` and are compared with `hmac.compare_digest`
on their UTF-8 bytes (time independent of where they differ). Binding an address other than
loopback needs a write token (`check_bind`).
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from coincast.errors import ConfigError

WRITE_ENV, READ_ENV = "COINCAST_TOKEN", "COINCAST_READ_TOKEN"


@dataclass(frozen=True)
class Tokens:
    write: str | None = None
    read: str | None = None


class Denied(Exception):
    """A request without the right token: status 401 (none sent) or 403 (wrong, or writes disabled)."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


def token_from_file(path: Path, flag: str) -> str:
    """The first line of a token file, stripped (ConfigError when missing or empty)."""
    try:
        text = Path(path).read_text().strip().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{flag} {path} cannot be read ({exc.__class__.__name__}); give a file holding the token") from None
    if not text or not text[0].strip():
        raise ConfigError(f"{flag} {path} is empty; write the token on its first line")
    return text[0].strip()


def load_tokens(token_file: Path | None = None, read_token_file: Path | None = None,
                env: dict[str, str] | None = None) -> Tokens:
    """Files first, then the environment; an empty variable counts as unset."""
    env = os.environ if env is None else env
    write = token_from_file(token_file, "--token-file") if token_file else (env.get(WRITE_ENV) or None)
    read = token_from_file(read_token_file, "--read-token-file") if read_token_file else (env.get(READ_ENV) or None)
    return Tokens(write, read)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_bind(host: str, tokens: Tokens) -> None:
    """Serving beyond this machine without a write token is refused before anything starts."""
    if not is_loopback(host) and tokens.write is None:
        raise ConfigError(f"--host {host} would expose the API beyond this machine without a token: set {WRITE_ENV} "
                          f"or --token-file FILE (and {READ_ENV} to protect reads), or bind 127.0.0.1")


def matches(given: str, expected: str) -> bool:
    """Constant-time comparison of two tokens."""
    return hmac.compare_digest(given.encode(), expected.encode())


def bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def check(tokens: Tokens, authorization: str | None, write: bool) -> None:
    """Raise Denied unless the request's Authorization header grants the access."""
    if write and tokens.write is None:
        raise Denied(403, f"writes are disabled: no token is configured; restart `coincast serve` with {WRITE_ENV} "
                          "set or --token-file FILE, then send Authorization: Bearer <token>")
    allowed = [t for t in ((tokens.write,) if write else (tokens.read, tokens.write)) if t]
    if not write and tokens.read is None:
        return  # reads are open unless a read token is configured
    given = bearer(authorization)
    if given is None:
        raise Denied(401, "this route needs a token: send the header Authorization: Bearer <token>")
    if not any([matches(given, t) for t in allowed]):  # a list: every token is compared, no early exit
        raise Denied(403, "the token is not valid for this route")
