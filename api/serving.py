"""Running the API under uvicorn, with its listening socket made so that Nagle stays off.

uvicorn (0.54) binds the socket for `--workers N` itself with `proto` 0; accepted connections
inherit it, and asyncio turns on TCP_NODELAY only for sockets that say IPPROTO_TCP. Without it
every keep-alive response after the first waited ~40 ms for the client's delayed ACK: a 6 ms
write answered in 48 ms (uvicorn issue #3149). The single-process path is not affected.
"""

from __future__ import annotations

import socket

import uvicorn
from uvicorn.supervisors import Multiprocess

APP = "api.app:app_from_env"


class TcpConfig(uvicorn.Config):
    """uvicorn's settings, with a TCP listening socket that says it is TCP."""

    def bind_socket(self) -> socket.socket:
        sock = super().bind_socket()
        if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.proto == 0:
            sock = socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, sock.detach())
            sock.set_inheritable(True)
        return sock


def serve(host: str, port: int, workers: int, log_level: str) -> None:
    """Serve the app from the environment's settings in `workers` processes."""
    # The app logs one JSON line per request with its request id; uvicorn's own access log
    # would say the same thing again, less usefully.
    config = TcpConfig(APP, factory=True, host=host, port=port, workers=workers,
                       log_level=log_level, access_log=False)
    if workers > 1:
        Multiprocess(config, sockets=[config.bind_socket()]).run()
    else:
        uvicorn.Server(config).run()
