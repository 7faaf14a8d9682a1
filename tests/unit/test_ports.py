"""The local stack's ports (processes._free_port): below the kernel's ephemeral range, and never
handed to two stacks starting side by side (a port bind(0) gave one stack and released went to the
next: its Pub/Sub emulator answered the other's topic calls, "Failed parsing HTTP/2")."""

from __future__ import annotations

import concurrent.futures
import socket

from dropbatch.local import processes


def test_ports_are_below_the_ephemeral_range_and_never_given_twice():
    low = processes._ephemeral_low()
    with concurrent.futures.ProcessPoolExecutor(4) as pool:
        batches = list(pool.map(_ports, [60] * 4))
    ports = [p for batch in batches for p in batch]
    assert len(set(ports)) == len(ports) == 240
    assert all(processes.LOWEST_PORT <= p < low for p in ports)


def test_a_port_in_use_is_not_claimed():
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        (processes.PORT_CLAIMS / str(port)).unlink(missing_ok=True)
        processes.PORT_CLAIMS.mkdir(exist_ok=True)
        assert not processes._claim(port)


def _ports(n: int) -> list[int]:
    return [processes._free_port() for _ in range(n)]
