"""A Channel Access repeater on 127.0.0.1 for the clients of the simulated IOC, in a thread.

libca registers with the repeater on ``EPICS_CA_REPEATER_PORT`` by sending it a zero-length
datagram and waits for a ``REPEATER_CONFIRM``; while none comes it tries again, forks
``caRepeater`` (not installed by pip: the child exits and stays a zombie) and, after 50 tries,
prints "CA client library is unable to contact CA repeater" on the server's stderr. caproto's
repeater registers such a client without confirming it, so every demo printed that a minute
after its first EPICS read. This one confirms every registration and, as EPICS's
``caRepeater`` does, passes what servers send (their beacons) on to the registered clients.
"""

from __future__ import annotations

import socket
import threading

import caproto

MAX_DATAGRAM = 65_535


def _forwarded(broadcaster: caproto.Broadcaster, message: bytes, host: str) -> bytes:
    """A server's datagram as passed on: a beacon without its sender's address gets it."""
    commands = broadcaster.recv(message, (host, 0))
    for command in commands:
        if isinstance(command, caproto.Beacon) and command.header.parameter2 == 0:
            command.header.parameter2 = caproto.ipv4_to_int32(host)
    return b"".join(bytes(command) for command in commands)


def _is_registration(broadcaster: caproto.Broadcaster, message: bytes, host: str) -> bool:
    if not message:  # what libca sends
        return True
    commands = broadcaster.recv(message, (host, 0))
    return any(isinstance(command, caproto.RepeaterRegisterRequest) for command in commands)


def _serve(sock: socket.socket) -> None:
    clients: dict[int, str] = {}  # port -> host
    broadcaster = caproto.Broadcaster(our_role=caproto.SERVER)
    while True:
        message, (host, port) = sock.recvfrom(MAX_DATAGRAM)
        try:
            if _is_registration(broadcaster, message, host):
                clients[port] = host
                sock.sendto(broadcaster.send(caproto.RepeaterConfirmResponse(host)), (host, port))
                continue
            data = _forwarded(broadcaster, message, host)
        except (caproto.CaprotoError, ValueError, OSError):
            continue  # not Channel Access, or a client gone: the others are still served
        for client_port, client_host in list(clients.items()):
            if client_port != port:
                try:
                    sock.sendto(data, (client_host, client_port))
                except OSError:  # that client is gone
                    del clients[client_port]


def start_repeater(port: int) -> bool:
    """Hold ``127.0.0.1:port`` and serve it from a daemon thread; False if something else
    holds the port already (a repeater of another process: libca uses that one)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.close()
        return False
    threading.Thread(target=_serve, args=(sock,), name="blissng CA repeater", daemon=True).start()
    return True


__all__ = ["start_repeater"]
