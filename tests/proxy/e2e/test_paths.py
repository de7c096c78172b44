"""A route on ``/admin`` cannot be bypassed by spelling the path differently: through a real
proxy, real sockets and backends that record the request line as it reached them.

Service `web` has two rules: ``PathPrefix /admin`` to Service `admin`, everything else to
Service `public`. Each request is written byte for byte (a client library would normalize
the path itself) and the table says what the client gets, which backend answered and the
request-target it was sent.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from tests.proxy.e2e.backends import RawBackend
from tests.proxy.e2e.conftest import Lab
from tests.proxy.e2e.harness import Mesh, bounded, httproute

ROUTES = httproute(
    """
  - matches: [{path: {type: PathPrefix, value: /admin}}]
    backendRefs: [{name: admin, port: 80}]
  - backendRefs: [{name: public, port: 80}]
"""
)


@dataclass
class Recorder(RawBackend):
    """A backend that answers 200 with its name and keeps each request-target it got, as
    written on the wire (keep-alive: the proxy pools its connections)."""

    name: str = ""
    targets: list[str] = field(default_factory=list)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                target = head.split(b" ", 2)[1].decode("latin-1")
                self.targets.append(target)
                body = f"{self.name} {target}".encode()
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def _recorder(lab: Lab, name: str) -> Recorder:
    recorder = Recorder(name=name)
    await recorder.start()
    lab.backends.append(recorder)  # stopped with the lab
    return recorder


async def _mesh(lab: Lab) -> tuple[Mesh, Recorder, Recorder]:
    admin, public = await _recorder(lab, "admin"), await _recorder(lab, "public")
    mesh = await lab.mesh({"web": [], "admin": [admin.port], "public": [public.port]}, ROUTES)
    return mesh, admin, public


async def _send(mesh: Mesh, target: str) -> tuple[int, dict[str, str], str]:
    answer = await mesh.raw(
        f"GET {target} HTTP/1.1\r\nhost: web\r\nconnection: close\r\n\r\n".encode("latin-1")
    )
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split(" ")[1]), headers, body.decode("latin-1")


CASES = [
    # (request-target, status, backend that answered, request-target it got); "" for the
    # proxy's own 400 (l5d-proxy-error: invalid path), "parser" for the HTTP parser's 400
    # (l5d-proxy-error: malformed request)
    ("/admin/x", 200, "admin", "/admin/x"),
    ("/public/../admin", 200, "admin", "/admin"),
    ("//admin", 200, "admin", "/admin"),
    ("/public//admin", 200, "public", "/public/admin"),
    ("/public/%2e%2e/admin", 200, "admin", "/admin"),
    ("/public/%2E%2e/admin", 200, "admin", "/admin"),
    ("/admin/.", 200, "admin", "/admin/"),
    ("/./admin", 200, "admin", "/admin"),
    ("\\admin", 400, "parser", ""),  # llhttp takes no target that starts with "\"
    ("\\\\admin", 400, "parser", ""),
    ("/public\\..\\admin", 200, "admin", "/admin"),
    ("/%61dmin", 200, "admin", "/admin"),
    ("/admin/x/../../public", 200, "public", "/public"),
    ("/admin?next=/../%2F", 200, "admin", "/admin?next=/../%2F"),
    ("/a/./b/../c//d?q=%2e%2e", 200, "public", "/a/c/d?q=%2e%2e"),
    ("/a%3ab", 200, "public", "/a%3Ab"),
    ("/admin;x=1", 200, "public", "/admin;x=1"),
    ("/a/../../etc/passwd", 400, "", ""),
    ("/..", 400, "", ""),
    ("/%2e%2e/admin", 400, "", ""),
    ("/admin%2Fsecret", 400, "", ""),
    ("/public%2F..%2Fadmin", 400, "", ""),
    ("/public%2f..%2fadmin", 400, "", ""),
    ("/%5Cadmin", 400, "", ""),
    ("/admin#top", 400, "", ""),
    ("/a%00", 400, "", ""),
    ("/a%zz", 400, "", ""),
    ("*", 400, "", ""),
    ("http://web/admin", 400, "", ""),
]


@pytest.mark.parametrize(("target", "status", "backend", "forwarded"), CASES)
@bounded(10)
async def test_every_spelling_of_a_path_is_routed_and_forwarded_normalized(
    lab: Lab, target: str, status: int, backend: str, forwarded: str
) -> None:
    mesh, admin, public = await _mesh(lab)
    got_status, headers, body = await _send(mesh, target)
    assert got_status == status, (target, got_status, body)
    if backend == "parser":
        assert headers["l5d-proxy-error"] == "malformed request"
        assert admin.targets == public.targets == []
        return
    if status == 400:
        assert headers["l5d-proxy-error"] == "invalid path"
        assert body.startswith("invalid path: "), body
        assert admin.targets == public.targets == []  # nothing reached a backend
        return
    assert body == f"{backend} {forwarded}"
    assert (admin.targets, public.targets) == (
        ([forwarded], []) if backend == "admin" else ([], [forwarded])
    )


@bounded(10)
async def test_a_refused_path_leaves_the_connection_usable(lab: Lab) -> None:
    mesh, admin, _ = await _mesh(lab)
    answer = await mesh.raw(
        b"GET /a/../../x HTTP/1.1\r\nhost: web\r\n\r\n"
        b"GET //admin HTTP/1.1\r\nhost: web\r\nconnection: close\r\n\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert answer.count(b"HTTP/1.1 200 OK") == 1 and answer.endswith(b"admin /admin")
    assert admin.targets == ["/admin"]


@bounded(10)
async def test_the_inbound_side_forwards_the_normalized_path_to_the_app(lab: Lab) -> None:
    """Where authorization will run: the app behind the inbound listener gets the same
    normal form, and a path above the root never reaches it."""
    app = await _recorder(lab, "app")
    mesh = await lab.mesh({"web": []}, ROUTES, inbound_app=("127.0.0.1", app.port))
    assert mesh.inbound is not None
    ok = await mesh.raw(
        b"GET /public/%2e%2e/admin?x HTTP/1.1\r\nhost: web\r\nconnection: close\r\n\r\n",
        port=mesh.inbound,
    )
    assert ok.endswith(b"app /admin?x"), ok
    refused = await mesh.raw(
        b"GET /../admin HTTP/1.1\r\nhost: web\r\nconnection: close\r\n\r\n", port=mesh.inbound
    )
    assert refused.startswith(b"HTTP/1.1 400 ") and b"l5d-proxy-error: invalid path" in refused
    assert app.targets == ["/admin?x"]
