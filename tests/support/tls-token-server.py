#!/usr/bin/env python3
"""An HTTPS token endpoint on 127.0.0.1 for Keyport's ca_file test.
Usage: tls-token-server.py CERT KEY   (prints its port, then serves until killed)
POST /fabric/api/login -> {"token": "tls-token-1", "expires_in": 60} (Patchworks' shape)."""
import http.server
import json
import ssl
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = json.dumps({"message": "ok", "token": "tls-token-1", "expires_in": 60}).encode()
        self.send_response(200 if self.path == "/fabric/api/login" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
server.socket = ctx.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
