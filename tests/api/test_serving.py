"""`vledger serve`: the listening socket of several workers keeps Nagle's algorithm off."""

from __future__ import annotations

import asyncio
import socket

from api.serving import BalancedMultiprocess, TcpConfig


def _nodelay_of_an_accepted_connection(listener: socket.socket) -> int:
    async def accept_one() -> int:
        seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                sock = transport.get_extra_info("socket")
                seen.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        server = await asyncio.get_running_loop().create_server(Probe, sock=listener)
        port = listener.getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            return await asyncio.wait_for(seen, 10)
        finally:
            writer.close()
            server.close()

    return asyncio.run(accept_one())


def test_the_socket_bound_for_several_workers_gives_connections_tcp_nodelay() -> None:
    config = TcpConfig("api.app:app_from_env", factory=True, host="127.0.0.1", port=0,
                       workers=2)
    listener = config.bind_socket()
    assert listener.proto == socket.IPPROTO_TCP and listener.get_inheritable()
    assert _nodelay_of_an_accepted_connection(listener) != 0


def test_each_worker_gets_its_own_socket_on_one_port_and_connections_spread() -> None:
    # Port 0 would give each socket a port of its own; take a free one first.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = TcpConfig("api.app:app_from_env", factory=True, host="127.0.0.1", port=port,
                       workers=2)
    supervisor = BalancedMultiprocess(config, sockets=[])
    first, second = supervisor.sockets[0], supervisor.sockets[0]
    try:
        assert first is not second
        assert first.getsockname()[1] == second.getsockname()[1] == port
        assert first.proto == socket.IPPROTO_TCP and first.get_inheritable()
        for sock in (first, second):
            sock.listen(64)
            sock.setblocking(False)
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(40)]
        accepted = {0: 0, 1: 0}
        for which, sock in enumerate((first, second)):
            while True:
                try:
                    conn, _ = sock.accept()
                except BlockingIOError:
                    break
                conn.close()
                accepted[which] += 1
        for client in clients:
            client.close()
        # The kernel hashes each new connection to one of the listening sockets.
        assert accepted[0] + accepted[1] == 40
        assert accepted[0] > 0 and accepted[1] > 0
    finally:
        first.close()
        second.close()
    assert _nodelay_of_an_accepted_connection(config.reuse_port_socket()) != 0
