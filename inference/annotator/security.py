"""What the annotator's server answers, and to whom: one ASGI layer in front of the app.

Modelled on Jupyter's server. Every request passes, in order:

1. **Host**: only the names this server is reached by (loopback names, the address it is
   bound to; with a wildcard bind also IP literals and this machine's names). A web page
   that rebinds its own DNS name to 127.0.0.1 sends its own name and is refused, so it can
   never read a frame (DNS rebinding).
2. **Token** (only when the server has one): ``?token=``, header ``X-Token`` or the cookie
   the page got. The cookie is named per server and holds a per-run secret, never the token.
3. **State-changing methods** (POST, PUT, PATCH, DELETE) must come from the page: no
   cross-site ``Sec-Fetch-Site``, an ``Origin`` (when sent) equal to the server's own, the
   per-server CSRF token in header ``X-CSRF-Token`` (a form cannot set a header), and a JSON
   body if any (text/plain, urlencoded and multipart forms are refused).
4. **Body size**: ``Content-Length`` over the limit is refused before a byte is read; a
   chunked body is read up to the limit and refused as soon as it passes it.

Every response, refusals and errors included, carries the security headers below. A refusal
is a 4xx JSON ``{"error": "<one line>"}``.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import secrets
import socket
import stat
from pathlib import Path
from typing import Optional
from urllib.parse import parse_qs

from utils.errors import UserError

log = logging.getLogger(__name__)

TOKEN_ENV = "TSMS_ANNOTATOR_TOKEN"
MIN_TOKEN_LENGTH = 32
MAX_JSON_BODY = 2 * 1024 * 1024  # the largest request the page sends is a few hundred bytes
CSRF_HEADER = "x-csrf-token"
LOOPBACK_NAMES = ("localhost",)
WILDCARD_HOSTS = ("0.0.0.0", "::", "")
UNSAFE_METHODS = ("POST", "PUT", "PATCH", "DELETE")

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = (
    ("content-security-policy", CSP),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-resource-policy", "same-origin"),  # no <img src> of a frame from another site
    ("cross-origin-opener-policy", "same-origin"),
    ("cache-control", "no-store"),  # frames are patient data: never in a disk cache
)
_OWN_HEADERS = {name.encode() for name, _ in SECURITY_HEADERS}


# ---------------------------------------------------------------------- the access token
def check_token(token: str, where: str) -> str:
    token = token.strip()
    if len(token) < MIN_TOKEN_LENGTH:
        raise UserError(f"{where}: the token has {len(token)} characters; use at least {MIN_TOKEN_LENGTH} "
                        f"(e.g. python -c \"import secrets; print(secrets.token_urlsafe(32))\")")
    if any(not c.isprintable() or c.isspace() for c in token):
        raise UserError(f"{where}: the token holds spaces or control characters")
    return token


def load_token(token_file: Optional[str] = None, environ=None) -> Optional[str]:
    """The token from ``--token_file`` or ``$TSMS_ANNOTATOR_TOKEN`` (never from the command
    line, which every local user can read in ``ps``); None when neither is given."""
    environ = os.environ if environ is None else environ
    if token_file is not None:
        path = Path(token_file)
        if not path.is_file():
            raise UserError(f"--token_file {path} is not a file")
        if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning("%s can be read by other users (chmod 600 it)", path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"cannot read --token_file {path}: {getattr(exc, 'strerror', None) or exc}") from None
        return check_token(text, f"--token_file {path}")
    if environ.get(TOKEN_ENV):
        return check_token(environ[TOKEN_ENV], f"${TOKEN_ENV}")
    return None


def new_token() -> str:
    return secrets.token_urlsafe(32)


# ---------------------------------------------------------------------- host names
def _split_host(value: str):
    """``name[:port]`` or ``[v6][:port]`` -> (lower-case name, port or None); None if malformed."""
    value = value.strip().lower()
    if value.startswith("["):
        name, _, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else (None if not rest else "bad")
    else:
        name, sep, port = value.rpartition(":") if value.count(":") == 1 else (value, "", None)
        port = port if sep else None
    if port is not None and not port.isdigit():
        return None
    name = name.rstrip(".")
    return (name, int(port) if port else None) if name else None


class HostPolicy:
    """The Host names a server bound to ``bind_host`` answers."""

    def __init__(self, bind_host: str = "127.0.0.1"):
        bind = bind_host.strip("[]").lower()
        self.wildcard = bind in WILDCARD_HOSTS
        self.names = set(LOOPBACK_NAMES)
        self.ips = set()
        try:
            self.ips.add(ipaddress.ip_address(bind))
        except ValueError:
            self.names.add(bind)
        if self.wildcard:  # reached from other machines by this machine's names or any of its addresses
            self.names |= {n.lower() for n in (socket.gethostname(), socket.getfqdn()) if n}

    def allows(self, host_header: Optional[str]) -> bool:
        parsed = _split_host(host_header or "")
        if parsed is None:
            return False
        name, _ = parsed
        try:
            ip = ipaddress.ip_address(name)
        except ValueError:
            return name in self.names  # a DNS name: only ours (a rebound name is the attacker's)
        # an IP literal cannot be rebound; with a specific bind, only loopback and that address
        return self.wildcard or ip.is_loopback or ip in self.ips


# ---------------------------------------------------------------------- the ASGI layer
class RequestGuard:
    """ASGI middleware: the checks of this module's docstring, then the app."""

    def __init__(self, app, *, csrf_token: str, cookie_name: str, host: str = "127.0.0.1",
                 token: Optional[str] = None, max_body: int = MAX_JSON_BODY):
        if len(csrf_token) < MIN_TOKEN_LENGTH:  # an empty one would match a missing header
            raise ValueError("RequestGuard needs a random CSRF token")
        self.app, self.hosts, self.token, self.csrf = app, HostPolicy(host), token, csrf_token
        self.cookie_name, self.max_body = cookie_name, max_body
        self.session = secrets.token_urlsafe(32)  # the cookie's value: valid for this run only, never the token

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            if scope["type"] == "websocket":  # none served
                await send({"type": "websocket.close", "code": 1008})
                return
            await self.app(scope, receive, send)
            return
        headers = _Headers(scope)
        refusal, set_cookie = self._check(scope, headers)
        ours = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS]
        if set_cookie:
            ours.append((b"set-cookie", f"{self.cookie_name}={self.session}; Path=/; HttpOnly; SameSite=Strict".encode()))
        started = False

        async def send_with_headers(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in _OWN_HEADERS]
                message = dict(message, headers=kept + ours)
            await send(message)

        if refusal is not None:
            await _send_error(send_with_headers, *refusal)
            return
        if scope["method"] in UNSAFE_METHODS:
            body = await _read_limited(receive, self.max_body)
            if body is None:
                await _send_error(send_with_headers, 413, f"request body over {self.max_body // 1024} kB")
                return
            receive = _replay(body, receive)
        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:  # a JSON 500 with our headers rather than a plain-text one
            log.exception("annotator: unexpected error on %s %s", scope["method"], scope.get("path"))
            if started:
                raise
            await _send_error(send_with_headers, 500, "internal error (see the annotator's log)")

    def _check(self, scope, headers):
        """(status, message) of the first refusal or None; and whether to set the cookie."""
        host = headers.get("host")
        if not self.hosts.allows(host):
            return (403, f"this annotator does not answer Host {host!r} (open it at the URL it printed)"), False
        set_cookie = False
        logged_in = secrets.compare_digest(_cookie(headers.get("cookie"), self.cookie_name).encode(), self.session.encode())
        if self.token and not logged_in:
            given = (parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token") or [""])[0]
            given = given or headers.get("x-token") or ""
            if not secrets.compare_digest(given.encode(), self.token.encode()):
                return (403, "missing or wrong token (use the URL the annotator printed)"), False
            set_cookie = True
        length = headers.get("content-length")
        if length is not None:
            if not length.strip().isdigit():
                return (400, "bad Content-Length"), False
            if int(length) > self.max_body:
                return (413, f"request body over {self.max_body // 1024} kB"), False
        if scope["method"] in UNSAFE_METHODS:
            site = headers.get("sec-fetch-site")
            if site is not None and site != "same-origin":
                return (403, f"refused a {site} {scope['method']} (only the annotator's own page may change it)"), False
            origin = headers.get("origin")
            if origin is not None and origin.lower() != f"{scope.get('scheme', 'http')}://{host}".lower():
                return (403, f"refused a {scope['method']} from origin {origin!r}"), False
            if not secrets.compare_digest((headers.get(CSRF_HEADER) or "").encode(), self.csrf.encode()):
                return (403, "missing or wrong X-CSRF-Token header (only the annotator's own page may change it)"), False
            ctype = (headers.get("content-type") or "").split(";")[0].strip().lower()
            if ctype and ctype != "application/json":
                return (415, f"request bodies are JSON, not {ctype}"), False
        return None, set_cookie


def _cookie(header: Optional[str], name: str) -> str:
    """One cookie's value; by hand, since SimpleCookie stops at the first odd cookie that
    another local app set, and ours would then be lost."""
    for part in (header or "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value.strip().strip('"')
    return ""


class _Headers:
    def __init__(self, scope):
        self._h = {}
        for k, v in scope.get("headers", []):
            self._h.setdefault(k.decode("latin-1").lower(), v.decode("latin-1"))

    def get(self, name):
        return self._h.get(name)


async def _read_limited(receive, limit: int) -> Optional[bytes]:
    """The whole body, or None as soon as it passes ``limit`` bytes (the rest is never read)."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive):
    done = False

    async def replayed():
        nonlocal done
        if not done:
            done = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: wait for the disconnect, as the server does

    return replayed


async def _send_error(send, status: int, message: str) -> None:
    body = json.dumps({"error": " ".join(message.split())}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def cookie_name_for(port: Optional[int]) -> str:
    """Per server (port and a random id): two annotators on one host never share or overwrite a cookie."""
    return f"tsms_annotator_{port or 0}_{secrets.token_hex(4)}"

