"""The Ivanti Event Notification Service vendor plug-in (conformance.vendors.Vendor).

The SUT is an MQTT client (a durable subscriber), so it is never a webhook receiver. Imported in
every pytest run of a user's environment: nothing heavy at module level; the broker loads when a
run (or ``conformance-sim serve ivanti``) starts it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from conformance.options import port
from conformance.vendors import AddOption, GetOption, RunningVendor, VendorRun

if TYPE_CHECKING:
    from pydantic import BaseModel

    from conformance.exploration import Explorer
    from conformance.harness import Harness
    from simulators.mqtt.policy import DuplicateClientId

__all__ = ["VENDOR", "IvantiSettings", "IvantiVendor"]

TopicStyleOption = Literal["neurons", "epmm"]


@dataclass(frozen=True)
class IvantiSettings:
    broker_port: int = 0
    cps_port: int = 0
    events_per_s: float = 1.0  # standalone only: the generated device events (0: none)
    duplicate_client_id: DuplicateClientId | None = None  # None: the broker core's default
    redelivery_timeout_s: float | None = None  # simulated seconds; None: only on reconnect
    topic_style: TopicStyleOption = "neurons"  # standalone only: a run takes the manifest's


class IvantiVendor:
    name = "ivanti"
    title = "Ivanti Event Notification Service"
    receiver = False
    behaviour_options = ("--ivanti-duplicate-client-id", "--ivanti-redelivery-timeout")

    def add_options(self, add: AddOption) -> None:
        add("--ivanti-broker-port", type=int, default=0, metavar="PORT",
            help="pin the simulated MQTT broker's port (default: a free one; the vendor's is 8883)")  # fmt: skip
        add("--ivanti-cps-port", type=int, default=0, metavar="PORT",
            help="pin the simulated CPS REST API's port (default: a free one)")  # fmt: skip
        add("--ivanti-events-per-s", type=float, default=1.0, metavar="N",
            help="conformance-sim serve: generated device events per second (default 1; 0: none)")  # fmt: skip
        add("--ivanti-duplicate-client-id", metavar="takeover|refuse",
            help="a second connection with a live client id takes over (MQTT 3.1.1, default) "
            "or is refused with CONNACK 2")  # fmt: skip
        add("--ivanti-redelivery-timeout", type=float, default=0.0, metavar="S",
            help="also resend an unacknowledged PUBLISH (DUP=1) after S simulated seconds in "
            "the same session (default 0: only when a persistent session reconnects)")  # fmt: skip
        add("--ivanti-topic-style", default="neurons", metavar="neurons|epmm",
            help="conformance-sim serve: tenant-prefixed (Neurons for MDM) or unprefixed (EPMM) "
            "topics; a conformance run takes topic_style from the manifest's [ivanti]")  # fmt: skip

    def settings(self, option: GetOption, *, pki_dir: Path) -> IvantiSettings:
        ports = {
            flag: port(flag, option(flag)) for flag in ("--ivanti-broker-port", "--ivanti-cps-port")
        }
        rate = option("--ivanti-events-per-s")
        if not 0 <= rate <= 1_000:
            raise ValueError(
                f"--ivanti-events-per-s={rate}: give events per second from 0 (none) to 1000"
            )
        from simulators.mqtt.policy import DuplicateClientId

        duplicate = option("--ivanti-duplicate-client-id")
        if duplicate is not None and duplicate not in get_args(DuplicateClientId):
            raise ValueError(
                f"--ivanti-duplicate-client-id={duplicate}: write takeover (MQTT 3.1.1) or refuse"
            )
        timeout = option("--ivanti-redelivery-timeout")
        if timeout < 0:
            raise ValueError(
                f"--ivanti-redelivery-timeout={timeout}: give simulated seconds (0: off)"
            )
        style = option("--ivanti-topic-style")
        if style not in ("neurons", "epmm"):
            raise ValueError(f"--ivanti-topic-style={style}: write neurons or epmm")
        return IvantiSettings(
            broker_port=ports["--ivanti-broker-port"],
            cps_port=ports["--ivanti-cps-port"],
            events_per_s=float(rate),
            duplicate_client_id=duplicate,
            redelivery_timeout_s=float(timeout) if timeout else None,
            topic_style=style,
        )

    def section_model(self) -> type[BaseModel]:
        from conformance.ivanti.section import IvantiSection

        return IvantiSection

    def section_for_url(self, url: str, *, token: str | None, ca: Path | None) -> BaseModel:
        raise ValueError(
            "an Ivanti SUT is an MQTT subscriber, not a webhook receiver: describe it in a "
            "manifest with an [ivanti] section (--sut=sut.toml)"
        )

    def profiles(self, section: BaseModel) -> frozenset[str]:
        style = getattr(section, "topic_style", "neurons")
        return frozenset({f"topic_style:{style}"})

    def observer_record_model(self) -> type[BaseModel]:
        from conformance.ivanti.section import ObservedEvent

        return ObservedEvent

    def observer_keys(self, record: Any) -> tuple[str, ...]:
        """The reported event's key (its topic and identifying fields)."""
        if not isinstance(record, dict) or not isinstance(record.get("topic"), str):
            return ()
        from simulators.ivanti.events import event_key

        key = event_key(record["topic"], record.get("message"))
        return (key,) if key else ()

    async def start(self, run: VendorRun) -> RunningVendor:
        from conformance.ivanti.running import start

        return await start(run)

    def sim_handle(self) -> Any:
        from conformance.ivanti.handle import IvantiSim

        return IvantiSim

    def operation_model(self) -> Any:
        from simulators.ivanti.operations import IvantiOperation

        return IvantiOperation

    def add_ctl_verbs(self, verbs: Any) -> None:
        publish = verbs.add_parser("publish", help="publish an event to the SUT's tenant")
        publish.add_argument("event_type", metavar="EVENT_TYPE", help="e.g. device_check_in")
        publish.add_argument("--payload", metavar="TEXT",
                             help="exactly these bytes instead of a realistic event")  # fmt: skip
        publish.add_argument("--qos", type=int, default=1, choices=(0, 1))
        publish.set_defaults(operation=lambda a: {
            "op": "publish", "event_type": a.event_type, "qos": a.qos,
            **({"payload": a.payload} if a.payload is not None else {}),
        })  # fmt: skip

    def explorers(self, harness: Harness) -> list[Explorer]:
        """Events, lost PUBACKs, in-session redelivery, drops, holds offline and simulated
        time interleaved (conformance/ivanti/explorer.py); none without an [ivanti] section."""
        from conformance.ivanti.driver import IvantiDriver
        from conformance.ivanti.explorer import IvantiExplorer
        from conformance.ivanti.running import RunningIvanti

        running = harness.running.get(self.name)
        if not isinstance(running, RunningIvanti) or running.section is None:
            return []
        return [IvantiExplorer(IvantiDriver(harness, running))]


VENDOR = IvantiVendor()
