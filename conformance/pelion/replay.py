"""A WebSocket reproducer: a short standalone script that plays the simulated service's side of
a failing check (docs/vendors/pelion.md §3). It serves ``PUT /v2/notification/websocket`` and
the ``wss`` connect, takes the SUT's socket when it offers the API key (``Authorization:
Bearer <key>`` or the subprotocol ``pelion_<key>``, as the service does), sends the frames the
check sent, and prints what the SUT did with its socket. Only aiohttp is needed: the script is
run from the report's folder (large frames are read from ``bodies/``) against a SUT started
with ``CONFORMANCE_PELION_API_URL`` set to the URL it prints."""

from __future__ import annotations

__all__ = ["FRAME_WAIT_S", "websocket_script"]

FRAME_WAIT_S = 5.0  # how long the script watches the socket after the last frame

_SCRIPT = '''#!/usr/bin/env python3
"""Reproduces {check}: plays the Pelion service's side of the SUT's WebSocket and sends
the frame(s) that check sent, then prints what the SUT did with its socket.

Run it from the report's folder, then start the SUT with
  CONFORMANCE_PELION_API_URL=<the URL printed>  CONFORMANCE_PELION_API_KEY={key}
  CONFORMANCE_CA_FILE={ca}
Usage: python3 {name} [PORT]   (default: any free port)"""

import asyncio
import pathlib
import ssl
import sys

from aiohttp import WSMsgType, web

REPORT = pathlib.Path(__file__).resolve().parent.parent
API_KEY = {key!r}
CERT, KEY = {cert!r}, {cert_key!r}
FRAMES = {frames!r}  # ("text", frame) or ("file", path from the report's folder)
WAIT_S = {wait!r}


def frames():
    for how, value in FRAMES:
        yield value if how == "text" else (REPORT / value).read_text("utf-8", "replace")


async def channel(request):
    return web.json_response({{"queueSize": 0, "status": "disconnected"}})


async def connect(request, done):
    offered = [p.strip() for v in request.headers.getall("Sec-WebSocket-Protocol", [])
               for p in v.split(",")]
    ok = request.headers.get("Authorization") == "Bearer " + API_KEY or (
        "pelion_" + API_KEY in offered)
    ws = web.WebSocketResponse(protocols=("wss",), autoping=True, max_msg_size=0)
    await ws.prepare(request)
    if not ok:
        print("the SUT offered no valid API key: closed 1008", flush=True)
        await ws.close(code=1008)
        return ws
    sent = 0
    for frame in frames():
        if ws.closed:
            break
        await ws.send_str(frame)
        sent += 1
    print(f"sent {{sent}} of {{len(FRAMES)}} frame(s)", flush=True)
    try:
        message = await asyncio.wait_for(ws.receive(), WAIT_S)
        if ws.close_code == 1006:
            print("the SUT's socket was lost (1006: no close frame)", flush=True)
        elif message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
            print(f"the SUT closed its socket: close code {{ws.close_code}}", flush=True)
        elif message.type == WSMsgType.ERROR:
            print(f"the SUT's socket ended: {{ws.exception()}}", flush=True)
        else:
            print(f"the SUT sent a {{message.type.name}} frame", flush=True)
    except TimeoutError:
        print(f"the SUT kept its socket for {{WAIT_S:g}} s", flush=True)
        await ws.close(code=1001)
    done.set()
    return ws


async def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    done = asyncio.Event()
    app = web.Application()
    app.router.add_route("*", "/v2/notification/websocket", channel)
    app.router.add_get("/v2/notification/websocket-connect", lambda r: connect(r, done))
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(CERT, KEY)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=tls)
    await site.start()
    bound = runner.addresses[0][1]
    print(f"CONFORMANCE_PELION_API_URL=https://127.0.0.1:{{bound}}", flush=True)
    await done.wait()
    await runner.cleanup()


asyncio.run(main())
'''


def websocket_script(
    *,
    check: str,
    name: str,
    key: str,
    ca: str,
    cert: str,
    cert_key: str,
    frames: list[tuple[str, str]],
) -> str:
    """The script's text: ``frames`` are ``("text", frame)`` or ``("file", path)`` (relative to
    the report's folder)."""
    return _SCRIPT.format(
        check=check,
        name=name,
        key=key,
        ca=ca,
        cert=cert,
        cert_key=cert_key,
        frames=frames,
        wait=FRAME_WAIT_S,
    )
