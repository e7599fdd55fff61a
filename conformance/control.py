"""The control plane of ``conformance-sim serve`` (docs/sut-contract.md §6, "Driving the
simulators"): an HTTP API over a :class:`~conformance.simulation.Simulation`.

Its routes are thin: each parses a typed operation and hands it to the vendor's ``perform``
(the powers live in ``simulators/<vendor>/operations.py``), and answers what the simulator did.

- ``POST /vendors/{vendor}/operations``: body ``{"op": …, …}``, one of the vendor's operations;
- ``POST /clock/advance`` ``{"seconds": S}`` and ``GET /clock``: the one simulated clock;
- ``POST /reset``: every vendor's ``reset`` operation;
- ``GET /log[?since=SEQ][&follow=1]``: the evidence as JSON lines;
- ``GET /openapi.json``: this API, generated from the operation models.

Every request carries ``Authorization: Bearer <token>`` (compared in constant time; the token
is made once and kept in the PKI folder, and never logged): without it, 401 and nothing changes.
Bodies are bounded (:data:`MAX_BODY_BYTES`) and must arrive within :data:`BODY_TIMEOUT_S`; a bad
operation is answered 400 naming the field and the fix. A slow or absent reader of the log only
loses its own stream: the simulators never wait for the control plane.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import to_jsonable_python

from conformance.options import stable_secret
from conformance.simulation import Simulation
from simulators.adapter import start_site
from simulators.network import LOCAL, Reach
from simulators.operations import MAX_ADVANCE_S

__all__ = ["MAX_BODY_BYTES", "ControlPlane", "control_token"]

TOKEN_FILE = "control-token"
MAX_BODY_BYTES = 256 * 1024  # an operation is small; a CA's PEM fits many times over
BODY_TIMEOUT_S = 10.0  # a request body arrives within this, or the request is refused
WRITE_TIMEOUT_S = 10.0  # a log reader takes each chunk within this, or its stream ends
MAX_FOLLOWERS = 16  # concurrent `GET /log?follow=1` streams
MAX_ANSWER_BYTES = 4 * 1024 * 1024  # an answer larger than this is refused, naming a query
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def control_token(pki_dir: Path) -> str:
    """The control plane's token, made once and kept (owner-only) in the PKI folder."""
    path = pki_dir / TOKEN_FILE
    token = stable_secret(path, lambda: secrets.token_urlsafe(32), lambda v: len(v) >= 32)
    os.chmod(path, 0o600)
    return token


class ClockAdvance(BaseModel):
    """``POST /clock/advance``: move simulated time forward by ``seconds``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    seconds: float = Field(gt=0, le=MAX_ADVANCE_S)


def _problem(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


def _field_problems(exc: ValidationError) -> list[dict[str, str]]:
    """Each problem as the field (dotted path) and what to change."""
    problems = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(part) for part in error["loc"]) or "(body)"
        problems.append({"field": where, "problem": error["msg"]})
    return problems


def _invalid(exc: ValidationError) -> web.Response:
    problems = _field_problems(exc)
    summary = "; ".join(f"{p['field']}: {p['problem']}" for p in problems[:5])
    return _problem(400, f"invalid operation: {summary}", fields=problems)


def _jsonable(value: Any) -> Any:
    return to_jsonable_python(value, bytes_mode="base64", fallback=str)


class ControlPlane:
    """The control plane's HTTP server over one simulation."""

    def __init__(
        self,
        simulation: Simulation,
        token: str,
        *,
        reach: Reach = LOCAL,
        port: int = 0,
    ) -> None:
        self.simulation = simulation
        self._token = token.encode()
        self.reach = reach  # binds reach.listen; its URL names reach.advertise
        self.port = port
        self._runner: web.AppRunner | None = None
        self._followers = 0

    @property
    def base_url(self) -> str:
        return self.reach.url("http", self.port)

    async def start(self) -> None:
        app = web.Application(middlewares=[self._authorized], client_max_size=MAX_BODY_BYTES)
        app.router.add_get("/openapi.json", self._openapi)
        app.router.add_post("/vendors/{vendor}/operations", self._operation)
        app.router.add_post("/clock/advance", self._advance)
        app.router.add_get("/clock", self._clock)
        app.router.add_post("/reset", self._reset)
        app.router.add_get("/log", self._log)
        self._runner = web.AppRunner(app, access_log=None, keepalive_timeout=15.0)
        await self._runner.setup()
        self.port = await start_site(self._runner, self.reach.listen, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # --- the door -----------------------------------------------------------------------------

    @web.middleware
    async def _authorized(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Every request: the bearer token, compared in constant time, before anything else.
        Nothing a handler raises reaches the client as a traceback."""
        given = request.headers.get("Authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), self._token
        ):
            return web.json_response(
                {"error": "unauthorized: send Authorization: Bearer <CONFORMANCE_CONTROL_TOKEN>"},
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="conformance-sim"'},
            )
        try:
            return await handler(request)
        except web.HTTPException as exc:
            message = exc.text or exc.reason
            return _problem(exc.status, f"{request.method} {request.path}: {message}")
        except Exception as exc:  # a harness fault: said plainly, never as a traceback
            return _problem(500, f"the simulator failed: {type(exc).__name__}: {exc}"[:2000])

    async def _json_body(self, request: web.Request) -> Any:
        """The request's JSON, read within BODY_TIMEOUT_S and at most MAX_BODY_BYTES."""
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            raise _Refused(413, f"the body is larger than {MAX_BODY_BYTES} bytes (the limit)")
        try:
            raw = await asyncio.wait_for(request.read(), BODY_TIMEOUT_S)
        except TimeoutError:
            raise _Refused(408, f"the body did not arrive within {BODY_TIMEOUT_S:g} s") from None
        except web.HTTPRequestEntityTooLarge:
            raise _Refused(
                413, f"the body is larger than {MAX_BODY_BYTES} bytes (the limit)"
            ) from None
        if not raw:
            return {}
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise _Refused(400, f"the body is not JSON ({exc}): send a JSON object") from None

    # --- routes -------------------------------------------------------------------------------

    async def _operation(self, request: web.Request) -> web.Response:
        vendor = request.match_info["vendor"]
        sim = self.simulation
        if vendor not in sim.running:
            return _problem(
                404, f"{vendor!r} is not served here (served: {', '.join(sim.running)})"
            )
        try:
            data = await self._json_body(request)
            if not isinstance(data, dict):
                raise _Refused(400, 'the body must be a JSON object such as {"op": "reset"}')
            operation = sim.parse(vendor, data)
        except _Refused as refused:
            return refused.response()
        except ValidationError as exc:
            return _invalid(exc)
        try:
            result = await sim.perform(vendor, operation)
        except ValueError as exc:  # the operation cannot be done now (e.g. no receiver yet)
            return _problem(409, f"{operation.describe()}: {exc}")
        return self._answer(
            {"vendor": vendor, "op": operation.op, "did": operation.describe(), "result": result}
        )

    async def _advance(self, request: web.Request) -> web.Response:
        try:
            advance = ClockAdvance.model_validate(await self._json_body(request))
        except _Refused as refused:
            return refused.response()
        except ValidationError as exc:
            return _invalid(exc)
        now = await self.simulation.advance(advance.seconds)
        return self._answer({"advanced_s": advance.seconds, "sim_s": now})

    async def _clock(self, request: web.Request) -> web.Response:
        real, sim = self.simulation.clock.readings()
        return self._answer({"sim_s": sim, "real_s": real})

    async def _reset(self, request: web.Request) -> web.Response:
        return self._answer({"reset": await self.simulation.reset()})

    def _answer(self, data: dict[str, Any]) -> web.Response:
        data["sim_s"] = data.get("sim_s", self.simulation.clock.now())
        body = json.dumps(_jsonable(data), separators=(",", ":"))
        if len(body) > MAX_ANSWER_BYTES:
            return _problem(
                507, f"the answer exceeds {MAX_ANSWER_BYTES} bytes: ask a narrower query"
            )
        return web.Response(text=body, content_type="application/json")

    async def _log(self, request: web.Request) -> web.StreamResponse:
        """The evidence as JSON lines, from ``since`` (default: the oldest kept); with
        ``follow``, new events as they happen, until the client goes."""
        feed = self.simulation.feed
        try:
            since = int(request.query.get("since", "0"))
        except ValueError:
            return _problem(400, "since: give an event number (the seq of a log line)")
        follow = request.query.get("follow", "") in ("1", "true", "yes")
        if follow and self._followers >= MAX_FOLLOWERS:
            return _problem(429, f"already {MAX_FOLLOWERS} followers of the log: stop one first")
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        self._followers += int(follow)
        try:
            seq = max(since, 0)
            while True:
                events, cut, seq = feed.since(seq)
                lines = [json.dumps({"cut": cut})] if cut else []
                lines += [json.dumps(_jsonable(event)) for event in events]
                if lines:
                    await asyncio.wait_for(
                        response.write(("\n".join(lines) + "\n").encode()), WRITE_TIMEOUT_S
                    )
                if not follow:
                    break
                await feed.wait_beyond(seq, 15.0)
        except (TimeoutError, ConnectionError):
            pass  # a slow or gone reader: its stream ends, nothing else waits
        finally:
            self._followers -= int(follow)
        return response

    async def _openapi(self, request: web.Request) -> web.Response:
        return web.json_response(openapi(self.simulation))


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status

    def response(self) -> web.Response:
        return _problem(self.status, str(self))


def openapi(simulation: Simulation) -> dict[str, Any]:
    """The control plane as OpenAPI 3.1, its operation bodies generated from the vendors'
    operation models (their JSON schemas)."""
    components: dict[str, Any] = {
        "ClockAdvance": ClockAdvance.model_json_schema(),
        "Problem": {
            "type": "object",
            "properties": {"error": {"type": "string"}, "fields": {"type": "array"}},
            "required": ["error"],
        },
    }
    bearer: list[dict[str, list[str]]] = [{"bearer": []}]
    problems = {
        "400": {"description": "bad input: the field and the fix", "content": _json("Problem")},
        "401": {"description": "no or wrong bearer token; nothing changed"},
    }
    paths: dict[str, Any] = {}
    for vendor in simulation.running:
        adapter = simulation.operations(vendor)
        schema = adapter.json_schema(ref_template="#/components/schemas/{model}")
        for name, definition in schema.pop("$defs", {}).items():
            components[name] = definition
        components[f"{vendor}.operation"] = schema
        paths[f"/vendors/{vendor}/operations"] = {
            "post": {
                "summary": f"perform one operation of the {vendor} simulators",
                "requestBody": {"required": True, "content": _json(f"{vendor}.operation")},
                "responses": {
                    "200": {"description": "what the simulator did"},
                    "409": {"description": "the operation cannot be done now"},
                    **problems,
                },
                "security": bearer,
            }
        }
    paths["/clock/advance"] = {
        "post": {
            "summary": "advance simulated time",
            "requestBody": {"required": True, "content": _json("ClockAdvance")},
            "responses": {"200": {"description": "the new simulated time"}, **problems},
            "security": bearer,
        }
    }
    paths["/clock"] = {"get": {"summary": "simulated and real time now", "security": bearer,
                               "responses": {"200": {"description": "sim_s and real_s"}}}}  # fmt: skip
    paths["/reset"] = {"post": {"summary": "disarm what earlier operations armed",
                                "security": bearer,
                                "responses": {"200": {"description": "what each vendor reset"}}}}  # fmt: skip
    paths["/log"] = {
        "get": {
            "summary": "the evidence as JSON lines",
            "parameters": [
                {"name": "since", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                {"name": "follow", "in": "query", "schema": {"type": "boolean"}},
            ],
            "responses": {"200": {"description": "application/x-ndjson"}},
            "security": bearer,
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "conformance-sim control plane", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _json(component: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{component}"}}}
