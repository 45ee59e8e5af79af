"""Who may use the web app: a token, then a cookie; Origin and Host checked on websockets.

Browsers send cookies with websocket handshakes from any site, so without an Origin check any
page the user visits could drive a console (cross-site websocket hijacking). The Host header is
checked too (DNS rebinding: a hostile name resolving to 127.0.0.1). Conventions of Jupyter:
a random token printed at start, exchanged for an HttpOnly cookie on the first visit; tokens are
compared with :func:`hmac.compare_digest`.

Non-browser clients (``blissng shell``, scripts) send no Origin and pass the token as
``?token=`` or an ``Authorization: Bearer`` header.

A watch link carries its own capability instead of the token: a *view key*
(:meth:`WebSecurity.view_key`), an HMAC of the session and console names signed with the
token. It opens that one console read-only (and its session's plot), nothing else: the
server, not the client, decides that such a connection cannot type.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import re
import secrets
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from blissng.errors import BlissngError

COOKIE_NAME = "blissng_token"
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


class Refused(BlissngError):
    """A request that the security policy refuses; ``str()`` says why and what to do."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def new_token() -> str:
    """A random token (192 bits) that never begins with ``-``: one in 64 of them did, and
    ``blissng shell --token TOKEN`` then took it for an option ("expected one argument")."""
    while True:
        token = secrets.token_urlsafe(24)
        if not token.startswith("-"):
            return token


_HOST = re.compile(
    r"""^(?:
        \[(?P<ipv6>[0-9a-f:.]+(?:%[0-9a-z]+)?)\]   # [::1], [fe80::1%eth0]
        | (?P<name>[a-z0-9_](?:[a-z0-9_.-]*[a-z0-9_])?\.?)  # localhost, 127.0.0.1, a.example.org.
    )(?::(?P<port>[0-9]{1,5}))?$""",
    re.VERBOSE,
)


def _host_name(host_header: str) -> str:
    """``example.org:8080`` -> ``example.org``; ``[::1]:80`` -> ``::1``; a header that is
    not a host with an optional port (``[::1]evil.example``, ``a b``) -> ``""`` (refused)."""
    match = _HOST.match(host_header.strip().lower())
    if match is None:
        return ""
    return match.group("ipv6") or match.group("name").rstrip(".")


def is_loopback(host: str) -> bool:
    name = _host_name(host) if host.startswith("[") or host.count(":") <= 1 else host.lower()
    if name in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass
class WebSecurity:
    """The app's policy. ``allowed_origins``: other web GUIs allowed to embed the consoles
    (``https://gui.example.org``); ``allowed_hosts``: names this server is reached by besides
    the loopback names (``"*"`` accepts any, for a server behind a trusted proxy)."""

    token: str = field(default_factory=new_token)
    allowed_origins: frozenset[str] = frozenset()
    allowed_hosts: frozenset[str] = frozenset()
    require_token: bool = True

    def __post_init__(self) -> None:
        self.allowed_origins = frozenset(o.rstrip("/").lower() for o in self.allowed_origins)
        self.allowed_hosts = frozenset(_host_name(h) or h.lower() for h in self.allowed_hosts)

    @classmethod
    def create(
        cls,
        token: str | None = None,
        *,
        allowed_origins: Iterable[str] = (),
        allowed_hosts: Iterable[str] = (),
    ) -> WebSecurity:
        return cls(
            token=token or new_token(),
            allowed_origins=frozenset(allowed_origins),
            allowed_hosts=frozenset(allowed_hosts),
        )

    # -- view keys -------------------------------------------------------------------------

    def view_key(self, session: str, console: str) -> str:
        """The capability to watch console ``console`` of ``session`` read-only."""
        message = f"view\0{session}\0{console}".encode()
        digest = hmac.new(self.token.encode(), message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:18]).decode()

    def view_key_ok(self, key: str | None, session: str, console: str | None) -> bool:
        if not key or not console:
            return False
        return hmac.compare_digest(key.encode(), self.view_key(session, console).encode())

    # -- checks ----------------------------------------------------------------------------

    def token_ok(self, candidate: str | None) -> bool:
        if not self.require_token:
            return True
        if not candidate:
            return False
        return hmac.compare_digest(candidate.encode(), self.token.encode())

    def check_host(self, host_header: str | None) -> None:
        if host_header is None:
            raise Refused(400, "missing Host header")
        name = _host_name(host_header)
        if not name:
            raise Refused(400, f"malformed Host header {host_header[:100]!r}")
        if is_loopback(name) or "*" in self.allowed_hosts or name in self.allowed_hosts:
            return
        raise Refused(
            403,
            f"Host {host_header!r} is not allowed (DNS rebinding protection); start the server "
            "with --allow-host NAME to accept it",
        )

    def check_origin(self, origin: str | None, host_header: str | None) -> None:
        """Browsers always send Origin on websockets: it must be this server or allowed."""
        if origin is None:
            return  # not a browser: the token decides
        normalized = origin.rstrip("/").lower()
        if normalized in self.allowed_origins or "*" in self.allowed_origins:
            return
        parts = urlsplit(normalized)
        if host_header is not None and parts.netloc == host_header.strip().lower():
            return
        raise Refused(
            403,
            f"Origin {origin!r} is not allowed to open consoles on this server; add it with "
            "--allow-origin to embed the shell in another web application",
        )

    def token_from(
        self, query: Mapping[str, str], headers: Mapping[str, str], cookies: Mapping[str, str]
    ) -> str | None:
        token = query.get("token")
        if token:
            return token
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip()
        return cookies.get(COOKIE_NAME)

    def check_websocket(
        self, query: Mapping[str, str], headers: Mapping[str, str], cookies: Mapping[str, str]
    ) -> None:
        """Raise :class:`Refused` unless Host, Origin and token are acceptable."""
        host = headers.get("host")
        self.check_host(host)
        self.check_origin(headers.get("origin"), host)
        if not self.token_ok(self.token_from(query, headers, cookies)):
            raise Refused(
                403, "missing or wrong token: open the URL printed by the server (?token=...)"
            )

    def check_http(
        self, query: Mapping[str, str], headers: Mapping[str, str], cookies: Mapping[str, str]
    ) -> None:
        self.check_host(headers.get("host"))
        if not self.token_ok(self.token_from(query, headers, cookies)):
            raise Refused(
                403, "missing or wrong token: open the URL printed by the server (?token=...)"
            )


def terminal_safe(text: str, *, one_line: bool = False) -> str:
    """``text`` as it may be echoed into consoles: control characters (ANSI escape
    sequences, carriage returns, bells, C1 controls) shown as ``\\x1b``-style escapes instead
    of acting on every terminal that shows them; newlines and tabs kept unless ``one_line``."""
    keep = "" if one_line else "\n\t"
    return "".join(
        ch if ch in keep or unicodedata.category(ch) != "Cc" else f"\\x{ord(ch):02x}" for ch in text
    )
