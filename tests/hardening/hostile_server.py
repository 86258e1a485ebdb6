#!/usr/bin/env python3
"""A small hostile HTTPS server on loopback for the issue #18 regression tests: a token endpoint
that answers any client-secret request, and listings whose next links loop: /loop/self links to
itself, /loop/a to /loop/b and back. Every GET is logged as one line "GET PATH" to LOG.

usage: hostile_server.py CERT KEY PORTFILE LOG
Writes the port it listens on to PORTFILE once it accepts connections."""
import json
import ssl
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

cert, key, portfile, log = sys.argv[1:5]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(n)
        if self.path.endswith("/oauth2/v2.0/token"):
            self.reply(200, {"token_type": "Bearer", "expires_in": 3599,
                             "ext_expires_in": 3599, "access_token": "hostile-test-token"})
        else:
            self.reply(404, {"error": {"code": "NotFound", "message": "no such path"}})

    def do_GET(self):
        with open(log, "a") as f:
            f.write("GET %s\n" % self.path)
        base = "https://localhost:%d" % self.server.server_address[1]
        nxt = {"/loop/self": "/loop/self", "/loop/a": "/loop/b", "/loop/b": "/loop/a"}
        path = self.path.split("?")[0]
        if path in nxt:
            self.reply(200, {"value": [{"id": path}], "nextLink": base + nxt[path]})
        else:
            self.reply(404, {"error": {"code": "NotFound", "message": "no such path"}})


srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
with open(portfile + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
import os
os.rename(portfile + ".tmp", portfile)
srv.serve_forever()
