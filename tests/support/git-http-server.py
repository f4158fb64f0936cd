#!/usr/bin/env python3
"""A git "dumb HTTP" server on 127.0.0.1 that demands Basic auth, for the git credential
helper test. Usage: git-http-server.py ROOT USER PASSWORD (prints its port, then serves
ROOT until killed). Wrong or missing credentials get 401 with a Basic challenge."""
import base64
import functools
import http.server
import sys

root, user, password = sys.argv[1], sys.argv[2], sys.argv[3]
expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        if self.headers.get("Authorization") != expected:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(
    ("127.0.0.1", 0), functools.partial(Handler, directory=root)
)
print(server.server_address[1], flush=True)
server.serve_forever()
