"""Whether a request to ``whaled review`` came from its own page, not from another site.

The page has no login, so a page on any other site the reviewer has open could post verdicts
to it (a cross-site form or fetch), or reach it under its own name after re-pointing that name
at 127.0.0.1 (DNS rebinding). A verdict is taken only when the ``Host`` header names this
server and the ``Origin`` header, which browsers send with every POST, is that same host.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

HTTP_PORT = 80  # a Host header without a port


def foreign_request(host: str | None, origin: str | None, address: str, port: int) -> str:
    """Why a request to the server listening on ``address`` and ``port`` is not the page's
    own ("" when it is). ``Host`` must be an address the server listens on, ``localhost`` for a
    loopback one, or, when it listens on every address, this machine's name or any address
    literal; ``Origin``, when sent, must be ``http://`` and that same host. A client without
    ``Origin`` (curl, a script) is not a browser page and is let through."""
    if not host:
        return "no Host header"
    split = urlsplit(f"//{host}")
    try:
        host_port = split.port or HTTP_PORT
    except ValueError:
        return f"Host {host!r} is not this server"
    if host_port != port or not is_own_name((split.hostname or "").lower(), address):
        return f"Host {host!r} is not this server"
    if origin is not None and origin.lower().rstrip("/") != f"http://{host.lower()}":
        return f"Origin {origin!r} is not this page's (http://{host})"
    return ""


def is_own_name(name: str, address: str) -> bool:
    """Whether a browser reaching ``name`` reaches the server listening on ``address``."""
    if name == address.lower().strip("[]"):
        return True
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return False  # --address gave a host name: only that name
    if ip.is_loopback:
        return name in ("localhost", "127.0.0.1", "::1")
    if ip.is_unspecified:  # every address: this machine's names, and address literals
        return name in ("localhost", socket.gethostname().lower(),
                        socket.getfqdn().lower()) or is_address(name)
    return False


def is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
