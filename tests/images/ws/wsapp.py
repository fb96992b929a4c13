#!/usr/bin/env python3
"""A WebSocket echo backend and client for lbgen's tests, stdlib only (RFC 6455: the handshake, unfragmented
text frames, ping/pong, close; client frames masked).

`wsapp.py` serves on $PORT (default 8080), HTTP/1.1 with keep-alive:
  GET /health                 -> 200 "health=200"
  GET with Upgrade: websocket -> 101; each text message comes back as "env=<LBGEN_TEST_ENV> name=<name> <message>"
  any other GET               -> 200 "env=<LBGEN_TEST_ENV> name=<name>"
With ALLOWED_HOSTS=a.example.com,b.example.com every request whose Host (port stripped) is not listed gets
400, /health included, as Django's ALLOWED_HOSTS and Rails' host authorization do.

Tests import `WebSocket` (the client) from this file.
"""
from __future__ import annotations

import base64
import hashlib
import os
import socket
import socketserver
import struct
import sys

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, CLOSE, PING, PONG = 0x1, 0x8, 0x9, 0xA


class Closed(Exception):
    """The peer closed the connection (a close frame, or the TCP connection ended)."""


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def frame(opcode: int, payload: bytes, mask: bool) -> bytes:
    head = bytes([0x80 | opcode])
    n = len(payload)
    bit = 0x80 if mask else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


class Conn:
    """A socket with a read buffer: exact reads, lines, and WebSocket frames."""

    def __init__(self, sock: socket.socket, mask: bool) -> None:
        self.sock, self.mask, self.buf = sock, mask, b""

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise Closed("connection closed")
        self.buf += data

    def read(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_head(self) -> bytes:
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        return head

    def send_frame(self, opcode: int, payload: bytes) -> None:
        self.sock.sendall(frame(opcode, payload, self.mask))

    def read_frame(self) -> tuple[int, bytes]:
        b0, b1 = self.read(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self.read(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self.read(8))[0]
        key = self.read(4) if b1 & 0x80 else None
        payload = self.read(n)
        if key:
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        return b0 & 0x0F, payload

    def read_message(self) -> str:
        """The next text message, answering pings on the way; Closed on a close frame."""
        while True:
            opcode, payload = self.read_frame()
            if opcode == TEXT:
                return payload.decode()
            if opcode == PING:
                self.send_frame(PONG, payload)
            elif opcode == CLOSE:
                raise Closed("close frame")


def parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return method, target, headers


class WebSocket:
    """A minimal client: `WebSocket(host, port, path="/", headers={...})`, `.send(text)`, `.recv(timeout)`."""

    def __init__(self, host: str, port: int, path: str = "/", headers: dict[str, str] | None = None,
                 timeout: float = 5.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.conn = Conn(self.sock, mask=True)
        key = base64.b64encode(os.urandom(16)).decode()
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        if "host" not in {k.lower() for k in headers or {}}:
            extra = f"Host: {host}:{port}\r\n" + extra
        self.sock.sendall((f"GET {path} HTTP/1.1\r\n{extra}Upgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        version, status, headers_seen = parse_head(self.conn.read_head())  # "HTTP/1.1 101 Switching ..."
        if status != "101":
            self.sock.close()
            raise ConnectionError(f"no upgrade: {version} {status}")
        if headers_seen.get("sec-websocket-accept") != accept_key(key):
            self.sock.close()
            raise ConnectionError("wrong Sec-WebSocket-Accept")

    def send(self, text: str) -> None:
        self.conn.send_frame(TEXT, text.encode())

    def recv(self, timeout: float = 5.0) -> str:
        self.sock.settimeout(timeout)
        try:
            return self.conn.read_message()
        except OSError as e:  # a reset: the proxy stopped the connection
            if isinstance(e, socket.timeout):
                raise
            raise Closed(str(e)) from e

    def echo(self, text: str, timeout: float = 5.0) -> str:
        self.send(text)
        return self.recv(timeout)

    def close(self) -> None:
        try:
            self.conn.send_frame(CLOSE, b"")
        except OSError:
            pass
        self.sock.close()


ENV = os.environ.get("LBGEN_TEST_ENV", "none")
NAME = os.environ.get("LBGEN_TEST_NAME") or socket.gethostname()
ALLOWED = {h for h in os.environ.get("ALLOWED_HOSTS", "").split(",") if h}


class Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = Conn(self.request, mask=False)
        try:
            while True:  # keep-alive: one request after another
                method, target, headers = parse_head(conn.read_head())
                if int(headers.get("content-length", "0") or 0):
                    conn.read(int(headers["content-length"]))
                host = headers.get("host", "").rsplit(":", 1)[0] if "]" not in headers.get("host", "") else ""
                if ALLOWED and host not in ALLOWED:
                    self.reply(400, f"Invalid HTTP_HOST header: {headers.get('host', '')!r}\n")
                elif headers.get("upgrade", "").lower() == "websocket":
                    self.upgrade(conn, headers)
                    return
                elif target.split("?")[0] == "/health":
                    self.reply(200, "health=200\n")
                else:
                    self.reply(200, f"env={ENV} name={NAME}\n")
                if headers.get("connection", "").lower() == "close":
                    return
        except (Closed, OSError, ValueError):
            return

    def reply(self, status: int, body: str) -> None:
        data = body.encode()
        reason = {200: "OK", 400: "Bad Request"}[status]
        self.request.sendall(f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\n"
                             f"Content-Length: {len(data)}\r\nX-Backend: {NAME}\r\n\r\n".encode() + data)

    def upgrade(self, conn: Conn, headers: dict[str, str]) -> None:
        self.request.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                              f"Sec-WebSocket-Accept: {accept_key(headers['sec-websocket-key'])}\r\n\r\n").encode())
        try:
            while True:
                message = conn.read_message()
                conn.send_frame(TEXT, f"env={ENV} name={NAME} {message}".encode())
        except Closed:
            try:
                conn.send_frame(CLOSE, b"")
            except OSError:
                pass


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main() -> int:
    with Server(("0.0.0.0", int(os.environ.get("PORT", "8080"))), Handler) as server:
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
