"""Delivery toward the SUT: callback PUTs and WebSocket frames, one batch per channel at a
time, and the log of what was sent (vendor doc, "The event notification channel": a callback
registration starts with a verification PUT ``{}``, a failed batch is retried after a back-off).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from simulators.clock import Clock
from simulators.evidence import Recorder
from simulators.faults import FaultPlan
from simulators.pelion.callback import CallbackClient
from simulators.pelion.channels import ChannelConflict
from simulators.pelion.config import ACTOR, PEER, PelionConfig
from simulators.pelion.delivery import Batch, CallbackDelivery, CallbackState, WebSocketDelivery
from simulators.pelion.models import Webhook, serialize
from simulators.pelion.records import AttemptLog, DeliveryAttempt, Verification, VerificationFailed
from simulators.pelion.schedule import Schedule
from simulators.pelion.websocket import Connection

__all__ = ["Sending"]


class Sending:
    """Who is sent what: the registered callbacks (one owner of ``webhooks``), the batches
    started, and the attempt log."""

    def __init__(
        self,
        schedule: Schedule,
        config: PelionConfig,
        faults: FaultPlan,
        log: AttemptLog,
    ) -> None:
        self.schedule = schedule
        self.clock: Clock = schedule.clock
        self.recorder: Recorder = schedule.recorder
        self.config = config
        self.faults = faults
        self.log = log
        self.client = CallbackClient(
            self.clock,
            cafiles=config.cafiles,
            timeout_s=config.request_timeout_s,
            caller=config.caller,
            untrusted_caller=config.untrusted_caller,
        )
        self.webhooks: dict[str, tuple[CallbackDelivery, Webhook]] = {}

    def forget(self, key: str) -> None:
        """``key``'s channel was removed: its callback is no longer registered."""
        self.webhooks.pop(key, None)

    def start_due(self, now: float) -> None:
        for key in self.schedule.registry.keys():  # noqa: SIM118 (a method, not a dict)
            core = self.schedule.registry.core(key)
            if core is None or core in self.schedule.sending:
                continue
            if isinstance(core, CallbackDelivery):
                registered = self.webhooks.get(key)
                if registered is None or registered[0] is not core:
                    continue
                batch = core.next_batch(now)
                if batch is not None:
                    self.schedule.begin(core)
                    self.schedule.tasks.spawn(
                        self._send_callback(key, core, registered[1], batch), "delivery"
                    )
            elif isinstance(core, WebSocketDelivery):
                conn = core.socket
                if isinstance(conn, Connection) and not conn.closing:
                    batch = core.next_batch(now)
                    if batch is not None:
                        self.schedule.begin(core)
                        self.schedule.tasks.spawn(
                            self._send_frame(key, core, conn, batch), "websocket frame"
                        )

    async def _send_callback(
        self, key: str, core: CallbackDelivery, webhook: Webhook, batch: Batch
    ) -> None:
        try:
            cause = self.schedule.cause_of(batch)
            fault = self.faults.take("callback")
            kinds = dict(batch.kinds)
            body = serialize(batch.items, batch.config, epoch_s=self.config.epoch_s, kinds=kinds)
            started_real, started_sim = self.clock.readings()
            label = f"batch {batch.number} (attempt {batch.attempt}, {len(batch)} item(s))"
            self.recorder.record(
                ACTOR,
                "->",
                PEER,
                "callback-put",
                f"PUT {label}, {len(body)} B" + (f" [fault {fault.kind}]" if fault else ""),
                cause=cause,
                url=webhook.url,
                client_cert=self.client.chain,
                kinds=kinds,
                first_uid=batch.items[0].uid,
            )
            exchange = await self.client.put_batch(webhook.url, body, webhook.headers, fault)
            now = self.clock.now()
            if exchange.status is not None:
                core.receive_response(batch, exchange.status, now)
            else:
                core.receive_failure(batch, now, exchange.error or exchange.outcome)
            retry_in = None
            if core.state is CallbackState.BACKING_OFF:
                retry_in = core.backoff.delay_s(core.failures)  # exact (retry_at - now rounds)
            self.log.add(
                DeliveryAttempt.of_batch(
                    batch,
                    key=key,
                    channel="callback",
                    attempt=batch.attempt,
                    body_bytes=len(body),
                    started_real_s=started_real,
                    started_sim_s=started_sim,
                    elapsed_real_s=exchange.elapsed_real_s,
                    succeeded=exchange.succeeded,
                    status=exchange.status,
                    answered=exchange.answered,
                    error=exchange.error,
                    fault=exchange.fault,
                    retry_in_sim_s=retry_in,
                    channel_removed=core.state is CallbackState.REMOVED,
                    url=webhook.url,
                    client_cert=exchange.client_cert,
                ),
                batch,
                body,
            )
            answer = (
                f"{exchange.answered}" if exchange.answered is not None else exchange.outcome
            ) + f" for {label} in {exchange.elapsed_real_s * 1000:.1f} ms"
            if exchange.fault in ("status", "timeout"):
                answer += f", counted as {exchange.status or 'a timeout'} (fault)"
            if retry_in is not None:
                answer += f"; retry in {retry_in:g} s (simulated)"
            self.recorder.record(
                PEER if exchange.answered is not None else ACTOR,
                "->" if exchange.answered is not None else "--",
                ACTOR if exchange.answered is not None else PEER,
                "callback-answer",
                answer,
                cause=cause,
                status=exchange.answered,
                error=exchange.error,
                elapsed_ms=round(exchange.elapsed_real_s * 1000, 2),
            )
        finally:
            self.schedule.end(core)

    async def _send_frame(
        self, key: str, core: WebSocketDelivery, conn: Connection, batch: Batch
    ) -> None:
        try:
            cause = self.schedule.cause_of(batch)
            kinds = dict(batch.kinds)
            body = serialize(batch.items, batch.config, epoch_s=self.config.epoch_s, kinds=kinds)
            started_real, started_sim = self.clock.readings()
            error = await conn.send_message(body, len(batch))
            now = self.clock.now()
            if error is None:
                core.batch_sent(batch, now)
            else:
                core.batch_failed(batch, now)
            self.log.add(
                DeliveryAttempt.of_batch(
                    batch,
                    key=key,
                    channel="websocket",
                    attempt=1,
                    body_bytes=len(body),
                    started_real_s=started_real,
                    started_sim_s=started_sim,
                    elapsed_real_s=self.clock.real() - started_real,
                    succeeded=error is None,
                    error=error,
                    connection=conn.info.number,
                ),
                batch,
                body,
            )
            self.recorder.record(
                ACTOR,
                "->",
                PEER,
                "websocket-frame",
                f"frame: batch {batch.number}, {len(batch)} item(s), {len(body)} B"
                + (f": not sent ({error})" if error else ""),
                cause=cause,
                connection=conn.info.number,
                first_uid=batch.items[0].uid,
            )
        finally:
            self.schedule.end(core)

    async def register_callback(
        self,
        url: str,
        headers: Mapping[str, str] | None = None,
        *,
        serialization: Mapping[str, Any] | None = None,
        key: str | None = None,
        verify: bool = True,
    ) -> Verification | None:
        """Register a callback for ``key`` (default: the run's) as ``PUT
        /v2/notification/callback`` does: the verification PUT ``{}`` with ``headers`` first;
        raises :class:`VerificationFailed` when it is not answered 2xx, ``ChannelConflict``
        when the key has another channel type. ``verify=False`` skips the verification (a
        check aid: a receiver that fails it is judged on the rest all the same)."""
        body: dict[str, Any] = {"url": url, "headers": dict(headers or {})}
        if serialization is not None:
            body["serialization"] = dict(serialization)
        webhook = Webhook.model_validate(body)
        return await self.register_webhook(key or self.config.api_key, webhook, verify=verify)

    async def register_webhook(
        self, key: str, webhook: Webhook, *, verify: bool = True
    ) -> Verification | None:
        """The steps of ``PUT /v2/notification/callback`` after the body was validated."""
        self.schedule.handle_timeout(
            self.clock.now()
        )  # timers first: a channel removed by now is gone
        existing = self.schedule.registry.mechanism(key)
        if existing not in (None, "CALLBACK"):
            raise ChannelConflict(key, existing, "CALLBACK")
        if not verify:
            self.recorder.record(
                ACTOR, "--", PEER, "register", f"{webhook.url} registered without verification"
            )
            self._registered(key, webhook)
            return None
        real, sim = self.clock.readings()
        self.recorder.record(
            ACTOR,
            "->",
            PEER,
            "verify",
            f"verification PUT {{}} to {webhook.url}",
            url=webhook.url,
            client_cert=self.client.chain,
        )
        self.schedule.busy += 1
        try:
            exchange = await self.client.verify(webhook.url, webhook.headers)
        finally:
            self.schedule.busy -= 1
        verification = Verification(
            key, webhook.url, tuple(webhook.headers or ()), real, sim, exchange
        )
        self.log.add_verification(verification)
        self.recorder.record(
            PEER if exchange.answered is not None else ACTOR,
            "->" if exchange.answered is not None else "--",
            ACTOR if exchange.answered is not None else PEER,
            "verify-answer",
            f"verification answered {exchange.answered} in {exchange.elapsed_real_s * 1000:.1f} ms"
            if exchange.answered is not None
            else f"verification failed: {exchange.error}",
            status=exchange.answered,
        )
        if not exchange.succeeded:
            raise VerificationFailed(exchange)
        self._registered(key, webhook)
        return verification

    def _registered(self, key: str, webhook: Webhook) -> None:
        self.schedule.carry_out(
            self.schedule.registry.register_callback(key, webhook, self.clock.now())
        )
        core = self.schedule.registry.callback(key)
        assert core is not None
        self.webhooks[key] = (core, webhook)
        self.schedule.handle_timeout(self.clock.now())

    async def delete_channel(self, key: str | None = None) -> str | None:
        """Delete ``key``'s channel as its application would (REST): the queue is dropped, a
        bound WebSocket is closed with the configured code (1001 by default). Returns the
        mechanism deleted, None when there was none."""
        key = key or self.config.api_key
        now = self.clock.now()
        mechanism = self.schedule.registry.mechanism(key)
        if mechanism == "CALLBACK":
            _, effects = self.schedule.registry.delete_callback(key, now)
        elif mechanism == "WEB_SOCKET":
            _, effects = self.schedule.registry.delete_websocket(key, now)
        elif mechanism == "LONG_POLLING":
            _, effects = self.schedule.registry.delete_pull(key, now)
        else:
            return None
        self.schedule.carry_out(effects)
        self.schedule.handle_timeout(self.clock.now())
        return mechanism
