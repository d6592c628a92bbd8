"""`vledger serve`: the listening socket of several workers keeps Nagle's algorithm off."""

from __future__ import annotations

import asyncio
import errno
import json
import socket
import threading
import time
from typing import Any

import httpx
import pytest
import uvicorn

from api.serving import (
    BalancedMultiprocess,
    HeldHeaders,
    OneSegmentProtocol,
    TcpConfig,
    ensure_port_free,
)


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


class _Recorder:
    """A transport that records what is written to it."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def test_a_response_head_waits_for_its_body_and_leaves_with_it() -> None:
    raw = _Recorder()
    held = HeldHeaders(raw)  # type: ignore[arg-type]
    held.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    assert raw.writes == []
    held.write(b"{}")
    assert raw.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
    held.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # an interim answer is never held
    assert raw.writes[-1] == b"HTTP/1.1 100 Continue\r\n\r\n"
    held.write(b"HTTP/1.1 304 Not Modified\r\n\r\n")
    held.flush()  # the end of a body-less response
    held.write(b"HTTP/1.1 204 No Content\r\n\r\n")
    held.close()  # and a close: nothing held is lost, nothing reordered
    assert raw.writes[-2:] == [b"HTTP/1.1 304 Not Modified\r\n\r\n",
                               b"HTTP/1.1 204 No Content\r\n\r\n"]
    assert raw.closed and held.is_closing()


def _serve_in_thread(app: Any) -> tuple[uvicorn.Server, threading.Thread, int]:
    config = TcpConfig(app, host="127.0.0.1", port=0, log_level="warning",
                       http=OneSegmentProtocol, lifespan="off")
    server = uvicorn.Server(config)
    listener = config.bind_socket()
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.02)
    return server, thread, listener.getsockname()[1]


def test_the_server_answers_every_kind_of_response_whole_and_in_order() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path == "/stream":  # a body in several parts, chunked
            await send({"type": "http.response.start", "status": 200, "headers": []})
            for part in (b"a", b"b", b"c"):
                await send({"type": "http.response.body", "body": part, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return
        if path == "/echo":  # reads the body: a client that expects 100-continue gets it
            body = b""
            more = True
            while more:
                message = await receive()
                body += message.get("body", b"")
                more = message.get("more_body", False)
            await send({"type": "http.response.start", "status": 201,
                        "headers": [(b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        if path == "/cached":
            await send({"type": "http.response.start", "status": 304, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"5")]})
        await send({"type": "http.response.body", "body": b"hello"})

    server, thread, port = _serve_in_thread(app)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            for _ in range(3):  # one keep-alive connection, every kind in turn
                assert client.get("/").text == "hello"
                head = client.head("/")
                assert head.status_code == 200 and head.headers["content-length"] == "5"
                assert head.content == b""
                assert client.get("/cached").status_code == 304
                assert client.get("/stream").text == "abc"
                echoed = client.post("/echo", content=b"x" * 100_000,
                                     headers={"Expect": "100-continue"})
                assert echoed.status_code == 201 and echoed.content == b"x" * 100_000
        # Two requests in one segment (pipelined) get two whole answers, in order.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /cached HTTP/1.1\r\nHost: x\r\n"
                        b"Connection: close\r\n\r\n")
            received = b""
            while chunk := raw.recv(65536):
                received += chunk
        first, second = received.split(b"HTTP/1.1 304", 1)
        assert first.startswith(b"HTTP/1.1 200 OK") and first.endswith(b"\r\n\r\nhello")
        assert b"connection: close" in second.lower()
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_a_request_the_parser_refuses_is_answered_as_problem_details() -> None:
    """bb34 F6: a 70,000-byte cursor got uvicorn's plain-text "Invalid HTTP request received."
    A target too long to parse is a 414 that says how long it may be; a malformed request a
    400; both application/problem+json, and the connection closes."""
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    def ask(request: bytes) -> tuple[bytes, dict[str, Any]]:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            raw.sendall(request)
            received = b""
            while chunk := raw.recv(65536):  # the server closes the connection
                received += chunk
        head, body = received.split(b"\r\n\r\n", 1)
        assert b"content-type: application/problem+json" in head.lower(), head
        assert b"connection: close" in head.lower(), head
        return head, json.loads(body)

    server, thread, port = _serve_in_thread(app)
    try:
        head, body = ask(b"GET /?cursor=" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 414 URI Too Long"), head
        assert body["status"] == 414 and body["type"].endswith("/uri-too-long")
        assert "65,535" in body["detail"] and "70,009" in body["detail"], body
        head, body = ask(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400 Bad Request"), head
        assert body["status"] == 400 and body["type"].endswith("/bad-request"), body
        # A target just under the bound is read as usual.
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            assert client.get("/", params={"c": "a" * 65_000}).text == "ok"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_a_port_the_workers_of_another_server_listen_on_is_refused() -> None:
    """Workers bind with SO_REUSEPORT, which would let a second server bind the same port and
    silently take half its connections; the plain bind first refuses, as uvicorn's does."""
    config = TcpConfig("api.app:app_from_env", factory=True, host="127.0.0.1", port=0,
                       workers=2)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        config.port = probe.getsockname()[1]
    ensure_port_free("127.0.0.1", config.port)  # free: nothing listens yet
    worker = BalancedMultiprocess(config, sockets=[]).sockets[0]
    try:
        worker.listen()
        with pytest.raises(OSError) as refused:
            ensure_port_free("127.0.0.1", config.port)
        assert refused.value.errno == errno.EADDRINUSE
    finally:
        worker.close()
