"""Stdio to Unix socket, byte for byte: how an MCP client in the sandbox reaches HQ's tool server.

The CLI starts MCP servers as child processes speaking on stdin/stdout, and the
sandbox has no database, so the server stays in HQ and this process only
carries bytes across the socket HQ mounts in. It is run by whatever Python 3
the sandbox has, so it imports nothing but the standard library and nothing of
HQ. Everything it could do wrong is HQ's to guard against: the peer on either
side may be hostile.

    python3 mcp_bridge.py /run/hq/mcp.sock
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading

CHUNK = 65536


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _stdin_to_socket(sock: socket.socket) -> None:
    """Copy until stdin ends, then half-close so the server still answers what it was sent."""
    try:
        while data := os.read(0, CHUNK):
            sock.sendall(data)
    except OSError:
        pass
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        sys.stderr.write("usage: mcp_bridge.py SOCKET\n")
        return 2
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(argv[1])
    except OSError as error:
        sys.stderr.write(f"mcp_bridge: cannot connect to {argv[1]}: {error.strerror or error}\n")
        return 1
    threading.Thread(target=_stdin_to_socket, args=(sock,), daemon=True).start()
    try:  # the server closing the connection ends the bridge, whatever stdin is doing
        while data := sock.recv(CHUNK):
            _write_all(1, data)
    except OSError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
