"""The far end of the HTTP benchmarks: a minimal aiohttp receiver over HTTPS (the harness CA's
server certificate for 127.0.0.1), in its own process so it does not share the measured
process's CPU. It reads each body and answers ``status``; with ``token``, a request without
``Authorization: Bearer <token>`` gets 401.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aiohttp import web

from simulators.pki import PKI

__all__ = ["receiver"]


def _serve(
    pki_dir: str,
    method: str,
    path: str,
    status: int,
    token: str | None,
    port_queue: multiprocessing.Queue,  # type: ignore[type-arg]
) -> None:
    pki = PKI.load_or_create(Path(pki_dir))

    async def answer(request: web.Request) -> web.Response:
        if token is not None and request.headers.get("Authorization") != f"Bearer {token}":
            return web.Response(status=401)
        await request.read()
        return web.Response(status=status)

    async def main() -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route(method, path, answer)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=pki.server_context(pki.sut_server))
        await site.start()
        port_queue.put(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        await asyncio.Event().wait()

    asyncio.run(main())


@contextmanager
def receiver(
    pki_dir: str, method: str, path: str, status: int, token: str | None = None
) -> Iterator[str]:
    """Start the receiver (with the PKI in ``pki_dir``); yield its URL; stop it."""
    ports: multiprocessing.Queue[int] = multiprocessing.Queue()
    server = multiprocessing.Process(
        target=_serve, args=(pki_dir, method, path, status, token, ports), daemon=True
    )
    server.start()
    try:
        yield f"https://127.0.0.1:{ports.get(timeout=30)}{path}"
    finally:
        server.terminate()
        server.join(5)
