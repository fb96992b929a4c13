#!/usr/bin/env python3
"""Test backend for lbgen: a small keep-alive HTTP server whose health can be steered.

GET /health            -> the current health status (200 unless changed)
GET /admin/health?status=503   set the health status
GET /admin/blackhole?on=1      make /health hang without answering
GET /anything else     -> 200 "env=<LBGEN_TEST_ENV> name=<hostname>"
On SIGTERM it keeps serving for DRAIN seconds (default 1), then exits.
"""
import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

ENV = os.environ.get("LBGEN_TEST_ENV", "none")
NAME = os.environ.get("LBGEN_TEST_NAME") or socket.gethostname()
PORT = int(os.environ.get("PORT", "8080"))
DRAIN = float(os.environ.get("DRAIN", "1"))
state = {"health": int(os.environ.get("HEALTH_STATUS", "200")), "blackhole": False}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes: avoid the 40ms delayed-ACK stall

    def log_message(self, *args):
        pass

    def _send(self, status, body):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Backend", NAME)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urlparse(self.path)
        query = parse_qs(url.query)
        if url.path == "/health":
            while state["blackhole"]:
                time.sleep(0.1)
            self._send(state["health"], "health=%d\n" % state["health"])
        elif url.path == "/admin/health":
            state["health"] = int(query.get("status", ["200"])[0])
            self._send(200, "ok\n")
        elif url.path == "/admin/blackhole":
            state["blackhole"] = query.get("on", ["1"])[0] == "1"
            self._send(200, "ok\n")
        else:
            self._send(200, "env=%s name=%s\n" % (ENV, NAME))

    do_HEAD = do_GET


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    server = Server(("0.0.0.0", PORT), Handler)

    def on_term(signum, frame):
        def stop():
            time.sleep(DRAIN)
            os._exit(0)
        threading.Thread(target=stop, daemon=True).start()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
