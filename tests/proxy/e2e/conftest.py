"""The `lab` fixture: backends and proxies started by a test, all stopped after it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.proxy.e2e.backends import Backend, RawBackend
from tests.proxy.e2e.harness import Endpoint, Mesh, compile_runtime, start_mesh
from turnout.proxy.table import RuntimeTable


@dataclass
class Lab:
    tmp: Path
    backends: list[Backend | RawBackend] = field(default_factory=list)
    meshes: list[Mesh] = field(default_factory=list)
    _compiled: int = 0

    async def backend(self, name: str) -> Backend:
        b = await Backend(name).start()
        self.backends.append(b)
        return b

    async def raw_backend(self) -> RawBackend:
        b = await RawBackend().start()
        self.backends.append(b)
        return b

    def compile(
        self,
        services: Mapping[str, Sequence[Endpoint]],
        routes: str,
        *,
        unready: Sequence[str] = (),
    ) -> RuntimeTable:
        self._compiled += 1
        return compile_runtime(
            self.tmp, services, routes, unready=unready, name=f"mesh-{self._compiled}.yaml"
        )

    async def mesh(
        self,
        services: Mapping[str, Sequence[Endpoint]],
        routes: str,
        *,
        unready: Sequence[str] = (),
        inbound_app: tuple[str, int] | None = None,
    ) -> Mesh:
        mesh = await start_mesh(
            self.compile(services, routes, unready=unready), inbound_app=inbound_app
        )
        self.meshes.append(mesh)
        return mesh

    async def close(self) -> None:
        for mesh in self.meshes:
            await mesh.close()
        for b in self.backends:
            await b.stop()


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[Lab]:
    lab = Lab(tmp_path)
    try:
        yield lab
    finally:
        await lab.close()
