"""One POST to a webhook endpoint, safe to aim at any URL a user typed.

The address is checked when the request is sent, not when the URL was saved (a name may
resolve anywhere later): private, loopback, link-local (cloud metadata), shared, multicast and
reserved addresses are refused unless WEBHOOK_ALLOW_PRIVATE_NETWORKS, and the connection goes
to the very address that was checked, so a second lookup cannot swap it (DNS rebinding).
Redirects are not followed. The whole call, TLS handshake and answer included, runs under a hard
deadline (WEBHOOK_TIMEOUT); at most the first KB of the answer is read.
"""

import http.client
import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass
from functools import cache
from urllib.parse import urlsplit

from django.conf import settings

from invoicegen.core.outbox import Deadline, DeadlineExceeded

KEPT_BYTES = 1024  # of an answer's body: what the deliveries log shows
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


class AddressRefused(ValueError):
    """The URL's host resolves to an address that webhooks may not reach."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: str


def check_url(url: str) -> None:
    """Raise ValueError for a URL no endpoint may have: https, or http to this machine where
    WEBHOOK_ALLOW_HTTP_LOOPBACK (on with DEBUG); no credentials in it (they would be shown and
    logged as a URL); not a literal address that sending would refuse."""
    if any(character.isspace() or not character.isprintable() for character in url):
        raise ValueError("The URL may not hold spaces or control characters.")
    if not url.isascii():  # what is sent is what was checked, not another reading of it
        raise ValueError(
            "The URL must be ASCII: an international name in punycode (xn--), other "
            "characters percent-encoded."
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises for a port out of range)
    except ValueError:
        raise ValueError("The URL is not valid.") from None
    host = parts.hostname or ""
    if parts.scheme == "http":
        if not (settings.WEBHOOK_ALLOW_HTTP_LOOPBACK and host in LOOPBACK_NAMES):
            raise ValueError("The URL must be https (http only to this machine, in development).")
    elif parts.scheme != "https":
        raise ValueError("The URL must be https.")
    if not host:
        raise ValueError("The URL has no host.")
    if parts.username or parts.password:
        raise ValueError("The URL may not hold credentials; the signature authenticates.")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return  # a name: checked when it is resolved, at each send
    if not allowed(address):
        raise ValueError("The URL's address is in a private or reserved network.")


# IPv6 prefixes that carry an IPv4 address a gateway reaches on the sender's behalf (NAT64,
# 6to4, the deprecated IPv4-compatible form): refused whole, as the IPv4 inside may be private.
TRANSLATED = [
    ipaddress.ip_network(prefix)
    for prefix in ("64:ff9b::/96", "64:ff9b:1::/48", "2002::/16", "::/96", "::ffff:0:0:0/96")
]


def allowed(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS:
        return True
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped:
            address = address.ipv4_mapped
        elif any(address in prefix for prefix in TRANSLATED):
            return False
    return address.is_global and not address.is_multicast


def resolve(host: str, port: int) -> list[tuple]:
    """The socket addresses to try, the refused ones left out; AddressRefused if none is left."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise ConnectionError(f"{host} does not resolve: {error.strerror}") from None
    except UnicodeError:  # a label over 63 characters
        raise AddressRefused(f"{host} is not a valid host name") from None
    usable = [info for info in found if allowed(ipaddress.ip_address(info[4][0].split("%")[0]))]
    if not usable:
        raise AddressRefused(f"{host} resolves to a private or reserved address")
    return usable


@cache
def _tls() -> ssl.SSLContext:
    return ssl.create_default_context()


def post(url: str, *, body: bytes, headers: dict[str, str]) -> Answer:
    """POST `body`; the answer's status and the start of its body. Raises OSError (a
    ConnectionError, DeadlineExceeded) when no answer came, AddressRefused for a refused one."""
    parts = urlsplit(url)
    https = parts.scheme == "https"
    host, port = parts.hostname, parts.port or (443 if https else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    with Deadline(settings.WEBHOOK_TIMEOUT) as deadline:
        until = time.monotonic() + deadline.seconds  # the lookup counts against it too
        sock = _connect(resolve(host, port), until=until)
        watched = sock.dup()  # TLS detaches `sock`: the deadline cuts the duplicate
        connection = http.client.HTTPConnection(host, port)
        connection.default_port = 443 if https else 80  # `Host` names a port only if not it
        try:
            deadline.guard(watched)
            connection.sock = _tls().wrap_socket(sock, server_hostname=host) if https else sock
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            kept = response.read(KEPT_BYTES)
        except (OSError, http.client.HTTPException) as error:
            if deadline.expired:
                raise DeadlineExceeded(f"no answer within {deadline.seconds} s") from None
            if isinstance(error, http.client.HTTPException):  # a malformed status line, ...
                raise ConnectionError(f"not an HTTP answer ({type(error).__name__})") from None
            raise ConnectionError(f"{type(error).__name__}: {error}") from None
        finally:
            connection.close()
            sock.close()
            watched.close()
        if deadline.expired:  # the answer was cut short
            raise DeadlineExceeded(f"no answer within {deadline.seconds} s")
    return Answer(response.status, kept.decode("utf-8", "replace"))


def _connect(addresses: list[tuple], *, until: float) -> socket.socket:
    """A connection to the first address that takes one before the deadline (`until`)."""
    error = None
    for family, kind, protocol, _, address in addresses:
        if (left := until - time.monotonic()) <= 0:
            break
        sock = socket.socket(family, kind, protocol)
        sock.settimeout(left)
        try:
            sock.connect(address)
            # As http.client's own connections: its headers and body go in separate writes,
            # and Nagle would hold the body for the server's delayed ACK (40 ms).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        except OSError as refused:
            sock.close()
            error = refused
    if error is None:
        raise DeadlineExceeded(f"no connection within {settings.WEBHOOK_TIMEOUT} s")
    raise ConnectionError(f"no connection: {error}")
