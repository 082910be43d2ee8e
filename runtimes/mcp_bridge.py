"""Stdio to Unix socket, byte for byte: how an MCP client in the sandbox reaches HQ's tool server.

The CLI starts MCP servers as child processes speaking on stdin/stdout, and the
sandbox has no database, so the server stays in HQ and this process only
carries bytes across the socket HQ mounts in. It is run by whatever Python 3
the sandbox has, so it imports nothing but the standard library and nothing of
HQ. Everything it could do wrong is HQ's to guard against: the peer on either
side may be hostile.

The server takes only connections that first send the run's token: the bridge
reads it from ``HQ_MCP_TOKEN`` in its environment (never its argv, which every
process in the sandbox can list), drops it from its environment, makes itself
non-dumpable (so its /proc files, environ included, are not readable by other
processes of its uid) where Linux allows, and sends it as its first line.

    HQ_MCP_TOKEN=... python3 mcp_bridge.py /run/hq/mcp.sock
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading

CHUNK = 65536
TOKEN_ENV = "HQ_MCP_TOKEN"  # runtimes/mcp_tools.py TOKEN_ENV
PR_SET_DUMPABLE = 4


def _not_dumpable() -> None:
    """Best effort: a process that is not dumpable keeps /proc/<pid>/environ and mem from its own uid's peers."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    except (OSError, AttributeError):
        pass


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
    token = os.environ.pop(TOKEN_ENV, "")
    if not token:
        sys.stderr.write(f"mcp_bridge: no token in {TOKEN_ENV}\n")
        return 2
    _not_dumpable()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(argv[1])
        sock.sendall(token.encode() + b"\n")
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
