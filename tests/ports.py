"""Free loopback ports for the servers tests start."""
from __future__ import annotations

import socket


def free_ports(count: int) -> list[int]:
    """*count* different free loopback ports: the sockets are held open together, since
    one released port may be handed out again at once (dovecot refused a config with the
    same port for IMAP and IMAPS: "duplicate listener")."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def free_port() -> int:
    return free_ports(1)[0]
