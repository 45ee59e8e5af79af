"""The Channel Access repeater the simulated IOC's clients use (blissng.sim, started with the
shared IOC): it confirms libca's zero-length registration and passes servers' beacons on to
the registered clients. caproto's repeater did not confirm, so libca printed "unable to
contact CA repeater after 50 tries" in every demo's log a minute after its first read."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import caproto
import pytest

from blissng.sim._ca_repeater import start_repeater

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def repeater_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert start_repeater(port)
    yield port


def _udp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(10)
    return sock


def _commands(data: bytes) -> list[object]:
    broadcaster = caproto.Broadcaster(our_role=caproto.CLIENT)
    return list(broadcaster.recv(data, ("127.0.0.1", 0)))


def test_a_zero_length_registration_is_confirmed(repeater_port: int) -> None:
    with _udp() as client:
        client.sendto(b"", ("127.0.0.1", repeater_port))  # what libca sends
        data, _ = client.recvfrom(1024)
    (confirm,) = _commands(data)
    assert isinstance(confirm, caproto.RepeaterConfirmResponse)


def test_beacons_reach_the_registered_clients_with_their_senders_address(
    repeater_port: int,
) -> None:
    with _udp() as client, _udp() as server:
        client.sendto(b"", ("127.0.0.1", repeater_port))
        client.recvfrom(1024)  # confirmed
        beacon = caproto.Beacon(13, 5064, 7, "0.0.0.0")  # no address: the repeater fills it
        server.sendto(bytes(beacon), ("127.0.0.1", repeater_port))
        data, _ = client.recvfrom(1024)
    (received,) = _commands(data)
    assert isinstance(received, caproto.Beacon)
    assert received.server_port == 5064 and received.beacon_id == 7
    assert received.header.parameter2 == caproto.ipv4_to_int32("127.0.0.1")


def test_a_port_already_held_is_left_to_its_repeater(repeater_port: int) -> None:
    assert not start_repeater(repeater_port)
