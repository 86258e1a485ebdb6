#!/usr/bin/env python3
"""A small hostile HTTPS server on loopback for the issue #18 regression tests: a token endpoint
that answers any client-secret request, and listings whose next links loop: /loop/self links to
itself, /loop/a to /loop/b and back. Every GET is logged as one line "GET PATH" to LOG.

For `kvreconcile plan` it also plays the clouds by Host header: login.localhost (tokens),
management.localhost (the vault kv-loop in resource group rg-loop) and kv-loop.vault.localhost
(Key Vault with its 401 challenge, a secret list, and a key list whose next link is itself).
And for the messages: the vault kv-rlo is a 403 whose text holds bidi overrides and terminal
sequences, the vault kv-junk answers a body that is not JSON (with the same characters), and
tenant ...ffff gets a 20 MB token response.

usage: hostile_server.py CERT KEY PORTFILE LOG
Writes the port it listens on to PORTFILE once it accepts connections."""
import json
import ssl
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

cert, key, portfile, log = sys.argv[1:5]
TENANT = "00000000-0000-0000-0000-000000000001"
HUGE_TENANT = "00000000-0000-0000-0000-00000000ffff"


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
        if self.path.startswith("/" + HUGE_TENANT + "/"):
            # a 20 MB token response
            data = b'{"access_token":"' + b"a" * (20 * 1024 * 1024) + b'"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        elif self.path.endswith("/oauth2/v2.0/token"):
            self.reply(200, {"token_type": "Bearer", "expires_in": 3599,
                             "ext_expires_in": 3599, "access_token": "hostile-test-token"})
        else:
            self.reply(404, {"error": {"code": "NotFound", "message": "no such path"}})

    def do_GET(self):
        with open(log, "a") as f:
            f.write("GET %s %s\n" % (self.path, self.headers.get("Host", "")))
        port = self.server.server_address[1]
        host = (self.headers.get("Host") or "").split(":")[0]
        path = self.path.split("?")[0]
        if host == "management.localhost" and path.endswith("/vaults/kv-rlo"):
            # an error text with a right-to-left override, an isolate and a terminal sequence
            self.reply(403, {"error": {"code": "AuthorizationFailed", "message":
                                       "denied for exe.\u202etxt \u2066x\u2069 \u001b[2J\u001b]0;pwned\u0007 end"}})
            return
        if host == "management.localhost" and path.endswith("/vaults/kv-junk"):
            data = "\u001b[2J\u202e not json".encode()  # quoted back by the JSON parser's error
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if host == "management.localhost" and path.endswith("/vaults/kv-loop"):
            sub = path.split("/")[2]
            self.reply(200, {
                "id": path, "name": "kv-loop", "type": "Microsoft.KeyVault/vaults",
                "location": "westeurope", "tags": {},
                "properties": {"tenantId": TENANT, "sku": {"family": "A", "name": "standard"},
                               "enableRbacAuthorization": True, "enableSoftDelete": True,
                               "softDeleteRetentionInDays": 90,
                               "vaultUri": "https://kv-loop.vault.localhost:%d/" % port,
                               "provisioningState": "Succeeded", "subscription": sub}})
            return
        if host == "kv-loop.vault.localhost":
            if not self.headers.get("Authorization"):
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Bearer authorization="https://login.localhost:%d/%s", resource="https://vault.localhost:%d"' % (port, TENANT, port))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if path == "/keys":
                link = "https://kv-loop.vault.localhost:%d%s" % (port, self.path)
                self.reply(200, {"value": [{"kid": "https://kv-loop.vault.localhost:%d/keys/k1" % port,
                                            "attributes": {"enabled": True}}], "nextLink": link})
            else:
                self.reply(200, {"value": [], "nextLink": None})
            return
        base = "https://localhost:%d" % port
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
