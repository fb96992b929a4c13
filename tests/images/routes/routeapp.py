#!/usr/bin/env python3
"""Test backend for path routing: every request (GET or POST) is answered 200 with
`name=<LBGEN_TEST_NAME> path=<the path and query it received> body=<bytes read>`; /health answers 200.
With TCP_PORT set it also runs a TCP echo server there that first sends `name=<LBGEN_TEST_NAME>\n`."""
import os
import socket
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NAME = os.environ.get("LBGEN_TEST_NAME") or socket.gethostname()
PORT = int(os.environ.get("PORT", "8080"))
TCP_PORT = int(os.environ.get("TCP_PORT", "0"))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        data = ("health=200\n" if self.path == "/health" else
                f"name={NAME} path={self.path} body={length}\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_HEAD = answer


class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.sendall(f"name={NAME}\n".encode())
        while True:
            data = self.request.recv(65536)
            if not data:
                return
            self.request.sendall(data)


class TcpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


if __name__ == "__main__":
    if TCP_PORT:
        tcp = TcpServer(("", TCP_PORT), Echo)
        threading.Thread(target=tcp.serve_forever, daemon=True).start()
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer(("", PORT), Handler).serve_forever()
