"""The Pelion Device Management vendor plug-in (conformance.vendors.Vendor).

Imported in every pytest run of a user's environment (options are declared at start-up), so it
imports nothing heavy at module level; the simulators load when a run starts them.

``--sut=URL`` is a callback receiver: the harness registers ``URL`` as the run's callback (the
verification PUT happens once the SUT is ready). ``--sut-token=VALUE`` is then registered as
the callback header ``Authorization: VALUE``, the way the vendor's own example registers a
token (``"headers": {"authorization": "f4b93d6e-…"}``); without it no header is registered.
A SUT that expects another header name, registers itself or uses the WebSocket channel needs
a manifest with a ``[pelion]`` section.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conformance.options import port, stable_secret
from conformance.vendors import AddOption, GetOption, RunningVendor, VendorRun

if TYPE_CHECKING:
    from pydantic import BaseModel

    from conformance.exploration import Explorer
    from conformance.harness import Harness
    from simulators.pelion.channels import ChannelOptions
    from simulators.pelion.delivery import WsAuthFailure

__all__ = ["VENDOR", "PelionSettings", "PelionVendor"]

# An API key travels in a Sec-WebSocket-Protocol header (``pelion_<key>``): an HTTP token.
API_KEY = re.compile(r"ak_[A-Za-z0-9._~-]{1,200}")


@dataclass(frozen=True)
class PelionSettings:
    api_port: int = 0
    api_key: str = "ak_conformance"
    # The second key of a SUT that claims both channels: its callback's (one channel per key).
    callback_api_key: str = "ak_conformance_callback"
    # The channel rules (back-off, the close code of a deleted channel), from the options;
    # None: the vendor doc's, whose values the simulator's cores hold.
    channel: ChannelOptions | None = None
    ws_auth_failure: WsAuthFailure | None = None  # None: the vendor doc's (close-1008)
    events_per_s: float = 1.0  # device traffic of conformance-sim serve
    pull_timeout_s: float = 30.0  # how long a long poll is held (real seconds)
    ping_interval_s: float = 30.0  # server pings (real seconds; not documented by the vendor)


class PelionVendor:
    name = "pelion"
    title = "Pelion Device Management notification channel"
    receiver = True
    behaviour_options = (
        "--pelion-first-backoff",
        "--pelion-pull-timeout",
        "--pelion-ping-interval",
        "--pelion-delete-close-code",
        "--pelion-ws-auth-failure",
    )

    def add_options(self, add: AddOption) -> None:
        add("--pelion-api-port", type=int, default=0, metavar="PORT",
            help="pin the simulated Device Management API's port (default: a free one)")  # fmt: skip
        add(
            "--pelion-api-key",
            metavar="ak_KEY",
            help="the API key the simulated API accepts (default: one kept in the PKI folder, "
            "the same from run to run)",
        )
        add(
            "--pelion-first-backoff",
            type=float,
            metavar="S",
            help="first retry delay of a failed callback batch: 2 (the vendor doc, default) or "
            "1 (later Pelion docs); then doubling up to 120 s",
        )
        add(
            "--pelion-events-per-s",
            type=float,
            default=1.0,
            metavar="N",
            help="conformance-sim serve: device events a second (simulated time; default 1; 0: none)",
        )
        add("--pelion-pull-timeout", type=float, default=30.0, metavar="S",
            help="seconds a long poll is held before 204 (real time; default 30)")  # fmt: skip
        add("--pelion-ping-interval", type=float, default=30.0, metavar="S",
            help="seconds between server pings on a WebSocket (real time; default 30)")  # fmt: skip
        add(
            "--pelion-delete-close-code",
            type=int,
            metavar="CODE",
            help="close code when a channel is deleted over REST: 1001 (the vendor doc, "
            "default) or 1000 (SPEC20/21)",
        )
        add(
            "--pelion-ws-auth-failure",
            metavar="MODE",
            help="a WebSocket connect with a missing or invalid key: close-1008 (accepted, "
            "then closed 1008: the vendor doc, default) or 401 (refused: SPEC20/21)",
        )

    def settings(self, option: GetOption, *, pki_dir: Path) -> PelionSettings:
        api_port = port("--pelion-api-port", option("--pelion-api-port"))
        key = option("--pelion-api-key")
        if key is not None and not API_KEY.fullmatch(key):
            raise ValueError(
                f"--pelion-api-key={key[:40]!r}: give a key starting with ak_ followed by "
                "letters, digits, '.', '_', '~' or '-' (it travels in a Sec-WebSocket-Protocol "
                "header), e.g. ak_0123abcd"
            )
        first = option("--pelion-first-backoff")
        if first not in (None, 1.0, 2.0):
            raise ValueError(
                f"--pelion-first-backoff={first:g}: give 2 (the vendor doc: 2, 4, 8 … s) or "
                "1 (later Pelion docs: 1, 2, 4 … s)"
            )
        rate = option("--pelion-events-per-s")
        if not 0 <= rate <= 1000:
            raise ValueError(f"--pelion-events-per-s={rate:g}: give a rate from 0 (none) to 1000")
        pull = option("--pelion-pull-timeout")
        if not 0 < pull <= 600:
            raise ValueError(f"--pelion-pull-timeout={pull:g}: give seconds above 0, at most 600")
        ping = option("--pelion-ping-interval")
        if not 0 < ping <= 3600:
            raise ValueError(f"--pelion-ping-interval={ping:g}: give seconds above 0, at most 3600")
        close = option("--pelion-delete-close-code")
        if close not in (None, 1000, 1001):
            raise ValueError(
                f"--pelion-delete-close-code={close}: give 1001 (the vendor doc) or 1000 "
                "(SPEC20/21)"
            )
        auth = option("--pelion-ws-auth-failure")
        if auth not in (None, "close-1008", "401"):
            raise ValueError(
                f"--pelion-ws-auth-failure={auth}: give close-1008 (the vendor doc) or 401 "
                "(SPEC20/21)"
            )
        return PelionSettings(
            api_port=api_port,
            api_key=key or _stable_key(pki_dir / "pelion-api-key"),
            callback_api_key=_stable_key(pki_dir / "pelion-callback-api-key"),
            channel=_channel_options(first, close),
            ws_auth_failure=auth,
            events_per_s=rate,
            pull_timeout_s=pull,
            ping_interval_s=ping,
        )

    def section_model(self) -> type[BaseModel]:
        from conformance.pelion.section import PelionSection

        return PelionSection

    def section_for_url(self, url: str, *, token: str | None, ca: Path | None) -> BaseModel:
        from conformance.pelion.section import PelionSection

        return PelionSection(
            channel="callback",
            callback_url=url,
            callback_headers={"Authorization": token} if token else {},
            tls_ca=ca,
        )

    def profiles(self, section: BaseModel) -> frozenset[str]:
        claimed = set(getattr(section, "channels", ()))
        if getattr(section, "registers_itself", False):
            claimed.add("registers_itself")
        if getattr(section, "verifies_caller", False):
            claimed.add("verifies_caller")
        return frozenset(claimed)

    def observer_record_model(self) -> type[BaseModel]:
        from conformance.pelion.section import ObservedItem

        return ObservedItem

    def observer_keys(self, record: Any) -> tuple[str, ...]:
        """The reported item's ``uid``, then its kind with its ``ep`` or ``id`` (a bare
        de-registration, a string, carries no uid): ``"<kind>:<address>"``."""
        if not isinstance(record, dict):
            return ()
        item, kind = record.get("item"), record.get("kind")
        if isinstance(item, str):
            return (f"{kind}:{item}",)
        if not isinstance(item, dict):
            return ()
        uid = item.get("uid")
        keys = [uid] if isinstance(uid, str) else []
        keys += [f"{kind}:{v}" for name in ("ep", "id") if isinstance(v := item.get(name), str)]
        return tuple(keys)

    async def start(self, run: VendorRun) -> RunningVendor:
        from conformance.pelion.running import start

        return await start(run)

    def sim_handle(self) -> Any:
        from conformance.pelion.handle import PelionSim

        return PelionSim

    def operation_model(self) -> Any:
        from simulators.pelion.operations import PelionOperation

        return PelionOperation

    def add_ctl_verbs(self, verbs: Any) -> None:
        notify = verbs.add_parser("notify", help="a resource's new value, once or as a burst")
        notify.add_argument("--device", metavar="EP", help="the device (default: a demo one)")
        notify.add_argument("--path", help="the resource (default /3200/0/5501)")
        notify.add_argument("--value", help="its new value, as text (default 1)")
        notify.add_argument("--count", type=int, default=1, metavar="N",
                            help="a burst of N notifications")  # fmt: skip
        notify.set_defaults(operation=lambda a: {
            "op": "notify", "count": a.count,
            **{k: v for k, v in (("device", a.device), ("path", a.path), ("value", a.value))
               if v is not None},
        })  # fmt: skip
        status = verbs.add_parser("channel", help="the notification channel now, and removals")
        status.set_defaults(operation=lambda a: {"op": "channel"})

    def explorers(self, harness: Harness) -> list[Explorer]:
        """One explorer per channel the SUT claims (conformance/pelion/explorer.py): queued
        items, callback faults and simulated time on the callback; closes, drops, refused
        reconnects and slow handshakes on the WebSocket."""
        from conformance.pelion.driver import PelionDriver
        from conformance.pelion.explorer import PelionCallbackExplorer, PelionWebSocketExplorer
        from conformance.pelion.running import RunningPelion

        running = harness.running.get(self.name)
        section = getattr(running, "section", None)
        if not isinstance(running, RunningPelion) or section is None:
            return []
        explorers: list[Explorer] = []
        if "callback" in section.channels and section.callback_url is not None:
            explorers.append(PelionCallbackExplorer(PelionDriver(harness, running)))
        if "websocket" in section.channels:
            explorers.append(PelionWebSocketExplorer(PelionDriver(harness, running)))
        return explorers


def _channel_options(
    first_backoff_s: float | None, close_code: int | None
) -> ChannelOptions | None:
    """The channel rules the options change, in the core's own types (None: the vendor doc's)."""
    if first_backoff_s is None and close_code is None:
        return None
    from dataclasses import replace

    from simulators.pelion.channels import ChannelOptions
    from simulators.pelion.delivery import BackOff, CloseCode

    options = ChannelOptions()
    if first_backoff_s is not None:
        options = replace(options, backoff=BackOff(first_s=first_backoff_s))
    if close_code is not None:
        options = replace(options, websocket_delete_close_code=CloseCode(close_code))
    return options


def _stable_key(path: Path) -> str:
    """An API key made once and kept beside the PKI, so a deployed SUT keeps working."""
    return stable_secret(
        path, lambda: "ak_" + secrets.token_hex(32), lambda value: bool(API_KEY.fullmatch(value))
    )


VENDOR = PelionVendor()
