"""Loopback-only BACnet/IP plumbing shared by the test fixtures
bacnet_device.py and bacnet_client.py (bacpypes3).

Both bind their UDP socket themselves and hand it to bacpypes3: a plain
socket, without SO_BROADCAST (the kernel refuses broadcast sends) and without
SO_REUSEPORT (a port in use is an error, never silently shared), on a
loopback host with a /32 mask (a wider mask would make bacpypes3 open a
broadcast socket).
"""
import ipaddress
import socket

import bacpypes3.app
from bacpypes3.app import Application
from bacpypes3.ipv4.link import NormalLinkLayer


class UsageError(Exception):
    """A bad command line argument or control command."""


def parse_loopback(text, what="address", port0=True):
    """'127.0.0.1:47808' or '127.0.0.1/32:47808' -> ('127.0.0.1', 47808).
    Loopback hosts only, /32 only; port 0 (any free port) only if `port0`."""
    host_mask, sep, port = text.rpartition(":")
    if not sep:
        raise UsageError(f"{what} {text!r}: expected 127.0.0.1:PORT")
    host, _, mask = host_mask.partition("/")
    if mask not in ("", "32"):
        raise UsageError(f"{what} {text!r}: only a /32 mask is allowed (no broadcast)")
    try:
        ip = ipaddress.IPv4Address(host)
        port = int(port)
    except ValueError as err:
        raise UsageError(f"{what} {text!r}: {err}") from None
    if not ip.is_loopback or str(ip) in ("127.0.0.0", "127.255.255.255"):
        raise UsageError(f"{what} {text!r}: a loopback host (127.x.y.z) is required")
    if not 0 <= port <= 65535 or (port == 0 and not port0):
        raise UsageError(f"{what} {text!r}: bad port")
    return str(ip), port


def bind_udp_socket(host, port):
    """A plain UDP socket bound to host:port (see the module doc)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise UsageError(f"cannot bind {host}:{port}: {err}") from None
    sock.setblocking(False)
    return sock


def application_on(sock, objects, cls=Application):
    """`cls.from_object_list(objects)` with its IPv4 link layer on `sock`.

    bacpypes3 builds the link layer from the network-port object and binds
    its own socket (with SO_BROADCAST and SO_REUSEPORT); for this one build
    it is made to use ours instead. This hook is what a bacpypes3 upgrade
    is most likely to break."""
    original = bacpypes3.app.NormalLinkLayer_ipv4

    def factory(local_address, **kwargs):
        return NormalLinkLayer(local_address, bind_socket=sock, **kwargs)

    bacpypes3.app.NormalLinkLayer_ipv4 = factory
    try:
        return cls.from_object_list(objects)
    finally:
        bacpypes3.app.NormalLinkLayer_ipv4 = original
