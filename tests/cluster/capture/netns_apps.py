"""The processes of the capture test, run inside its network namespaces (`ip netns exec`).

```
python netns_apps.py serve NAME=HOST:PORT ...   HTTP servers answering "NAME" (one thread each);
                                                 greet:NAME=HOST:PORT: a TCP server that
                                                 speaks first, "NAME\n", then closes
python netns_apps.py greeted HOST PORT           connect, print the first line it is sent
python netns_apps.py get URL [N]                 N plain http.client GETs, one connection each:
                                                 {"bodies": {"v1": 30, ...}, "errors": [...]}
python netns_apps.py wait URL [SECONDS]          until URL answers 200 (exit 1 on timeout)
python netns_apps.py fetch URL                    print the body (a proxy's /metrics)
```

Standard library only, an unmodified client: whatever the proxy does, iptables made it happen.
"""

from __future__ import annotations

import http.client
import http.server
import json
import socket
import socketserver
import sys
import threading
import time
import urllib.parse
import urllib.request


class Greeter(socketserver.ThreadingTCPServer):
    """A server-first protocol (as MySQL's greeting): writes its name on accept."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, name: str, where: tuple[str, int]) -> None:
        greeting = f"{name}\n".encode()

        class Greet(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                self.request.sendall(greeting)

        super().__init__(where, Greet)


def greeted(host: str, port: int) -> None:
    with socket.create_connection((host, port), timeout=3) as sock:
        print(json.dumps({"greeting": sock.makefile("rb").readline().decode()}))


def serve(specs: list[str]) -> None:
    servers: list[socketserver.TCPServer] = []
    for spec in specs:
        name, _, where = spec.partition("=")
        host, _, port = where.rpartition(":")
        if name.startswith("greet:"):
            greeter = Greeter(name.removeprefix("greet:"), (host, int(port)))
            servers.append(greeter)
            threading.Thread(target=greeter.serve_forever, daemon=True).start()
            continue

        class Answer(http.server.BaseHTTPRequestHandler):
            me = name

            def do_GET(self) -> None:
                body = self.me.encode()
                self.send_response(200)
                self.send_header("content-length", str(len(body)))
                self.send_header("x-peer", self.client_address[0])
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        server = http.server.ThreadingHTTPServer((host, int(port)), Answer)
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print("serving", flush=True)
    threading.Event().wait()


def get(url: str, n: int) -> None:
    parts = urllib.parse.urlsplit(url)
    bodies: dict[str, int] = {}
    errors: list[str] = []
    peers: set[str] = set()
    for _ in range(n):
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=5)
        try:
            conn.request("GET", parts.path or "/")
            resp = conn.getresponse()
            body = resp.read().decode()
            key = body if resp.status == 200 else f"{resp.status} {body}"
            bodies[key] = bodies.get(key, 0) + 1
            peers.add(resp.headers.get("x-peer", ""))
        except OSError as exc:
            errors.append(str(exc))
        finally:
            conn.close()
    print(json.dumps({"bodies": bodies, "errors": errors, "peers": sorted(peers)}))


def wait(url: str, seconds: float) -> None:
    parts = urllib.parse.urlsplit(url)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=1)
        try:
            conn.request("GET", parts.path or "/")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.02)
    sys.exit(f"{url} not ready after {seconds}s")


if __name__ == "__main__":
    verb, *rest = sys.argv[1:]
    if verb == "serve":
        serve(rest)
    elif verb == "fetch":
        with urllib.request.urlopen(rest[0], timeout=5) as resp:
            sys.stdout.write(resp.read().decode())
    elif verb == "greeted":
        greeted(rest[0], int(rest[1]))
    elif verb == "get":
        get(rest[0], int(rest[1]) if len(rest) > 1 else 1)
    else:
        wait(rest[0], float(rest[1]) if len(rest) > 1 else 15.0)
