"""Tokens: who may change the service (write) and, optionally, who may read it; each has a name.

A tokens file (`--tokens FILE`) holds one token per line, `name token` for a write token or
`name token read` for a read-only one; blank lines and lines starting with `#` are skipped. The
name is what decisions record: a promotion or rollback through the API is made `by` the name
of the token that asked for it. The single-token options still work: the write token from
`--token-file` or `$COINCAST_TOKEN` is named `write-token`, the read token from
`--read-token-file` or `$COINCAST_READ_TOKEN` `read-token`.

With no write token the write routes answer 403 and say how to set one. Once any read-only
token exists the GET routes of /v1 and /metrics need a token (a write token reads too), and
/ready tells callers without one only whether the service is ready. Tokens travel as
`Authorization: Bearer <token>` and are compared with `hmac.compare_digest` on their UTF-8
bytes, every configured token each time (time independent of which one matches, or where they
differ). Binding an address other than loopback needs a write token (`check_bind`).
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

from coincast.errors import ConfigError

WRITE_ENV, READ_ENV = "COINCAST_TOKEN", "COINCAST_READ_TOKEN"
WRITE_NAME, READ_NAME = "write-token", "read-token"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
MIN_LENGTH = 8  # a shorter token is a typo or a guessable word


@dataclass(frozen=True)
class Token:
    name: str
    secret: str
    write: bool


class Tokens:
    """The configured tokens. `Tokens(write=..., read=...)` is the single-token form; `named`
    adds tokens of a tokens file."""

    def __init__(self, write: str | None = None, read: str | None = None, named: tuple[Token, ...] = ()):
        self.write, self.read = write, read  # the single tokens, as given
        legacy = [Token(WRITE_NAME, write, True)] if write else []
        legacy += [Token(READ_NAME, read, False)] if read else []
        self.all: tuple[Token, ...] = (*legacy, *named)

    @property
    def writes(self) -> bool:
        """Some token may write (else writes are disabled)."""
        return any(t.write for t in self.all)

    @property
    def reads_protected(self) -> bool:
        """A read-only token exists: reads need a token."""
        return any(not t.write for t in self.all)


class Denied(Exception):
    """A request without the right token: status 401 (none sent) or 403 (wrong, or writes disabled)."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


def token_from_file(path: Path, flag: str) -> str:
    """The first line of a token file, stripped (ConfigError when missing or empty)."""
    text = _read(path, flag, "the token").strip().splitlines()
    if not text or not text[0].strip():
        raise ConfigError(f"{flag} {path} is empty; write the token on its first line")
    return text[0].strip()


def tokens_from_file(path: Path) -> tuple[Token, ...]:
    """The tokens of a tokens file (ConfigError naming the line of the first mistake)."""
    tokens: list[Token] = []
    for number, line in enumerate(_read(path, "--tokens", "`name token` lines").splitlines(), 1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        where = f"--tokens {path} line {number}"
        if len(words) not in (2, 3) or (len(words) == 3 and words[2] not in ("read", "write")):
            raise ConfigError(f"{where}: write `name token` (a write token) or `name token read` (read only)")
        name, secret = words[0], words[1]
        if not NAME.fullmatch(name):
            raise ConfigError(f"{where}: the name {name!r} may hold letters, digits, '.', '_', '@' and '-' (64 at most)")
        if len(secret) < MIN_LENGTH:
            raise ConfigError(f"{where}: the token of {name} is shorter than {MIN_LENGTH} characters; "
                              "use a random one, e.g. from `python -c 'import secrets; print(secrets.token_urlsafe())'`")
        tokens.append(Token(name, secret, len(words) == 2 or words[2] == "write"))
    if not tokens:
        raise ConfigError(f"--tokens {path} holds no token; write one `name token` line per token")
    return tuple(tokens)


def _read(path: Path, flag: str, what: str) -> str:
    try:
        return Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{flag} {path} cannot be read ({exc.__class__.__name__}); give a file holding {what}") from None


def load_tokens(token_file: Path | None = None, read_token_file: Path | None = None,
                env: dict[str, str] | None = None, tokens_file: Path | None = None) -> Tokens:
    """Files first, then the environment (an empty variable counts as unset), then a tokens file;
    every name and every token at most once."""
    env = os.environ if env is None else env
    write = token_from_file(token_file, "--token-file") if token_file else (env.get(WRITE_ENV) or None)
    read = token_from_file(read_token_file, "--read-token-file") if read_token_file else (env.get(READ_ENV) or None)
    tokens = Tokens(write, read, tokens_from_file(tokens_file) if tokens_file else ())
    for key, what in ((lambda t: t.name, "name"), (lambda t: t.secret, "token")):
        values = [key(t) for t in tokens.all]
        twice = next((t for t in tokens.all if values.count(key(t)) > 1), None)
        if twice is not None:
            raise ConfigError(f"the {what} of {twice.name} is given twice (--tokens, --token-file, --read-token-file or the "
                              "environment): give every token its own name and its own value")
    return tokens


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_bind(host: str, tokens: Tokens) -> None:
    """Serving beyond this machine without a write token is refused before anything starts."""
    if not is_loopback(host) and not tokens.writes:
        raise ConfigError(f"--host {host} would expose the API beyond this machine without a token: set {WRITE_ENV}, "
                          f"--token-file FILE or --tokens FILE (and {READ_ENV} or a read token to protect reads), "
                          "or bind 127.0.0.1")


def matches(given: str, expected: str) -> bool:
    """Constant-time comparison of two tokens."""
    return hmac.compare_digest(given.encode(), expected.encode())


def bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def holder(tokens: Tokens, authorization: str | None) -> Token | None:
    """The token the Authorization header carries, if it is one of ours."""
    given = bearer(authorization)
    if given is None:
        return None
    found = [t for t in tokens.all if matches(given, t.secret)]  # a list: every token is compared, no early exit
    return found[0] if found else None


def check(tokens: Tokens, authorization: str | None, write: bool) -> str | None:
    """The name of the token that grants the access (None: reads are open and none was sent);
    Denied otherwise."""
    if write and not tokens.writes:
        raise Denied(403, f"writes are disabled: no token is configured; restart `coincast serve` with {WRITE_ENV} "
                          "set, --token-file FILE or --tokens FILE, then send Authorization: Bearer <token>")
    token = holder(tokens, authorization)
    if not write and not tokens.reads_protected:
        return None if token is None else token.name  # reads are open unless a read token is configured
    if bearer(authorization) is None:
        raise Denied(401, "this route needs a token: send the header Authorization: Bearer <token>")
    if token is None or (write and not token.write):
        raise Denied(403, "the token is not valid for this route")
    return token.name
