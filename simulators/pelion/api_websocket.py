"""``GET /v2/notification/websocket-connect`` over aiohttp: the handshake decided by the core
:func:`~simulators.pelion.handshake.judge_handshake` (vendor doc, "WebSocket"; SPEC20/21), then
the socket's whole life (:class:`~simulators.pelion.websocket.Connection`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from aiohttp import web

from simulators.faults import FaultKind
from simulators.pelion.api_calls import EXCERPT, ApiBackend, ApiCall, ApiError, call_note
from simulators.pelion.config import ACTOR, PEER
from simulators.pelion.handshake import Accept, Refuse, judge_handshake
from simulators.pelion.websocket import FRAMES_IN, Connection, ConnectionInfo

__all__ = ["WebSocketConnects"]


class WebSocketConnects:
    """The WebSocket connect handler; ``handshaking`` holds the keys whose handshake is in
    progress (one owner: a second handshake with the same key gets 429)."""

    def __init__(self, sim: ApiBackend, keep: Callable[[ApiCall], None]) -> None:
        self.sim = sim
        self._keep = keep
        self.handshaking: set[str] = set()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """The handshake, then the socket's whole life (this handler returns when it ends)."""
        sim, clock = self.sim, self.sim.clock
        call_note().websocket = True
        number = sim.new_connection_number()
        real, sim_s = clock.readings()
        decision = judge_handshake(
            request.method, request.headers, request.headers.getall("Sec-WebSocket-Protocol", []),
            sim.keys, self.handshaking, sim.config.ws_auth_failure,
        )  # fmt: skip
        credentials, outcome = decision.credentials, decision.outcome
        token, status, valid = credentials.token, credentials.status, credentials.valid
        base = ConnectionInfo(
            number, 0, real, sim_s, key=token[:200] if token else None, auth=credentials.auth,
            key_valid=valid, offered_subprotocols=tuple(p[:200] for p in credentials.offered[:10]),
        )  # fmt: skip
        if isinstance(outcome, Refuse):
            sim.keep_connection(replace(base, status=outcome.status, refusal=outcome.reason))
            self._keep_handshake(request, real, sim_s, outcome.status, status, outcome.reason)
            return ApiError(
                outcome.status, outcome.reason, headers=dict(outcome.headers)
            ).response()
        if isinstance(outcome, Accept):
            self.handshaking.add(outcome.key)
        try:
            fault = sim.faults.take("handshake")
            if fault is not None and fault.kind == FaultKind.DELAY:
                await clock.sleep_real(float(fault.get("seconds", 1.0)))
            ws = web.WebSocketResponse(
                protocols=outcome.subprotocols, autoping=False, autoclose=True, heartbeat=None,
                compress=False, max_msg_size=FRAMES_IN, timeout=5.0,
            )  # fmt: skip
            await ws.prepare(request)
        finally:
            if token is not None:
                self.handshaking.discard(token)
        conn = Connection(
            ws,
            request.transport,
            clock,
            replace(base, status=101, subprotocol=ws.ws_protocol),
            self._ws_event,
            ping_interval_s=sim.config.ping_interval_s,
            pong_timeout_s=sim.config.pong_timeout_s,
            send_timeout_s=sim.config.request_timeout_s,
            pings_enabled=sim.pings_enabled,
        )
        sim.keep_connection(conn)
        self._keep_handshake(request, real, sim_s, 101, status, "")
        sim.recorder.record(
            PEER, "->", ACTOR, "websocket-connect",
            f"connection #{number}: 101 (auth: {credentials.auth or 'none'}, "
            f"key {'accepted' if valid else status}, subprotocol {ws.ws_protocol!r})",
            connection=number, offered=list(base.offered_subprotocols),
        )  # fmt: skip
        end = "lost"
        try:
            if isinstance(outcome, Accept):
                sim.socket_bound(outcome.key, conn)
                end = await conn.run()
            else:
                # Close at once and wait for the handshake to finish (reading in parallel would
                # race aiohttp's own read for the client's answer: the client would see 1006).
                await conn.close(outcome.code, outcome.reason)
                end = conn.refused()
        finally:
            conn.mark_lost()
            if isinstance(outcome, Accept):
                sim.socket_ended(outcome.key, conn, by_client=end == "client-close")
            info = conn.info
            sim.recorder.record(
                ACTOR, "--", PEER, "websocket-end",
                f"connection #{number} ended: {info.end}"
                + (f", close sent {info.close_sent[0]}" if info.close_sent else "")
                + (f", client close {info.close_received}" if info.close_received else ""),
                connection=number,
            )  # fmt: skip
        return ws

    def _keep_handshake(
        self, request: web.Request, real: float, sim_s: float, code: int, auth: str, note: str
    ) -> None:
        self._keep(
            ApiCall(
                real, sim_s, request.method, request.path[:500], request.query_string[:500],
                code, auth, self.sim.clock.real() - real, "", note[:EXCERPT],
                request.headers.get("User-Agent", "")[:200],
            )
        )  # fmt: skip
        if code != 101:
            self.sim.recorder.record(
                ACTOR, "->", PEER, "websocket-refused", f"{code} for the WebSocket connect: {note}"
            )

    def _ws_event(self, conn: Connection, kind: str, summary: str) -> None:
        self.sim.recorder.record(
            ACTOR, "--", PEER, f"websocket-{kind}",
            f"connection #{conn.info.number}: {summary}", connection=conn.info.number,
        )  # fmt: skip
