"""The vendor plug-in interface (docs/architecture.md, "A vendor is a plug-in").

A vendor is a package ``conformance/<name>/`` whose module ``vendor.py`` defines ``VENDOR``, an
object implementing :class:`Vendor`. The generic modules (plugin, harness, manifest, observer,
report, launcher, GEN checks, self-test, ``conformance-sim``) reach vendors only through this
interface and name none of them.

This module is imported by the pytest plugin in every pytest run of a user's environment, so it
and every ``vendor.py`` import nothing heavy at module level (no aiohttp, pydantic, jinja2,
hypothesis, schemathesis or simulator): they import those inside the methods that need them.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from pydantic import BaseModel

    from conformance.exploration import Explorer
    from conformance.harness import Harness
    from simulators.clock import Clock
    from simulators.evidence import Recorder
    from simulators.network import Reach
    from simulators.pki import PKI, CertFiles

__all__ = [
    "AddOption",
    "Endpoint",
    "GetOption",
    "RunningVendor",
    "Vendor",
    "VendorRun",
    "discover",
    "setup_mistake",
    "vendor",
]

FIRST_CONTACT_TIMEOUT_S = (
    5.0  # a first-contact request not answered by then is the checks' to judge
)
WRONG_PATH = (404, 405)
REFUSED = (401, 403)

AddOption = Callable[..., Any]  # pytest's ``group.addoption`` or argparse's ``add_argument``
GetOption = Callable[[str], Any]  # an option's value by its flag, "--<vendor>-…"


@dataclass(frozen=True)
class Endpoint:
    """A SUT endpoint the harness watches: it must accept connections before the checks start
    and still at the end (GEN-LIVE-01). ``cafile`` verifies its certificate; ``client_cert``
    is presented to it (a receiver may require the caller's certificate)."""

    what: str  # where it was declared, e.g. "[<vendor>] <key>"
    url: str
    cafile: Path | None = None
    client_cert: CertFiles | None = None


@dataclass(frozen=True)
class VendorRun:
    """What a vendor's simulators get to start with: the run's shared parts."""

    clock: Clock
    recorder: Recorder
    pki: PKI
    observer_url: str
    run_dir: Path
    settings: Any  # the vendor's own settings object, from :meth:`Vendor.settings`
    section: BaseModel | None  # the SUT's manifest section; None when serving standalone
    slow: bool = False  # --slow: checks may wait for the SUT's long real-time timers
    # --listen, --advertise: where servers bind, the name SUTs use (default: loopback only)
    reach: Reach = field(default_factory=lambda: _loopback())


def _loopback() -> Reach:
    from simulators.network import LOCAL  # the plugin imports this module: no simulators yet

    return LOCAL


class RunningVendor(Protocol):
    """A vendor's simulators, started for one run (or one ``conformance-sim serve``)."""

    def environment(self) -> dict[str, str]:
        """The ``CONFORMANCE_<VENDOR>_*`` variables a SUT needs (docs/sut-contract.md §3)."""

    def endpoints(self) -> list[Endpoint]:
        """The SUT's endpoints: probed before the checks start and by GEN-LIVE-01."""

    async def after_ready(self) -> None:
        """Runs once the SUT is ready (e.g. register a callback the SUT serves)."""

    async def first_contact(self) -> str | None:
        """Before the checks, once the SUT's endpoints accept connections and their
        certificates verify: one request the vendor itself sends when an integration is set up
        (kept out of the records the checks judge). A message naming the fix when the answer
        shows a setup mistake that every check would repeat (a 404: the wrong path; a 401 or
        403 to the correct credentials: the wrong token or headers); else None (whatever else
        the SUT answers is for the checks to judge)."""

    def errors(self) -> list[str]:
        """Every error raised so far in a background task or request handler (the harness's
        faults, never the SUT's): a check during which one appears gets ``error``."""

    async def stop(self) -> None:
        """Stop every server, client and task."""

    async def perform(self, operation: Any) -> Any:
        """Carry out one of the vendor's operations (:meth:`Vendor.operation_model`)."""


class Vendor(Protocol):
    """One vendor plug-in: ``VENDOR`` in ``conformance/<name>/vendor.py``."""

    name: str  # the manifest section, the observer route, the option prefix
    title: str  # for reports: the vendor's product name
    receiver: bool  # its SUT can be a webhook receiver given as --sut=URL
    # The options that change what its simulators do (a vendor variant): recorded in every
    # report's "run" (docs/sut-contract.md §7). Ports, keys and paths are not among them.
    behaviour_options: tuple[str, ...]

    def add_options(self, add: AddOption) -> None:
        """Declare the vendor's options, each named ``--<name>-…``."""

    def settings(self, option: GetOption, *, pki_dir: Path) -> Any:
        """Validate the options into the vendor's settings; raise ValueError naming the option
        and the fix."""

    def section_model(self) -> type[BaseModel]:
        """The manifest section ``[<name>]`` as a pydantic model (unknown keys forbidden)."""

    def section_for_url(self, url: str, *, token: str | None, ca: Path | None) -> BaseModel:
        """The section equivalent of ``--sut=URL --sut-token=… --sut-ca=…`` (receivers only);
        raise ValueError naming the option and the fix."""

    def profiles(self, section: BaseModel) -> frozenset[str]:
        """The optional profiles a section claims (the catalogue's ``profile`` values)."""

    def observer_record_model(self) -> type[BaseModel]:
        """The record a SUT POSTs to ``{observer}/<name>`` (docs/sut-contract.md §4)."""

    def observer_keys(self, record: Any) -> tuple[str, ...]:
        """What ties a record to the item it reports (e.g. a notification id): the observer
        attributes evidence by these keys and the checks count reports by them. Any input."""

    async def start(self, run: VendorRun) -> RunningVendor:
        """Start the vendor's simulators in the running event loop."""

    def operation_model(self) -> Any:
        """Every operation of the vendor's simulators: a union of pydantic models told apart
        by ``op`` (``simulators/<name>/operations.py``), each with ``apply(target)``."""

    def sim_handle(self) -> Any:
        """The class of the ``<name>_sim`` fixture's handle: a ``SimHandle`` with the vendor's
        verbs (``conformance/<name>/handle.py``)."""

    def add_ctl_verbs(self, verbs: Any) -> None:
        """Declare ``conformance-sim ctl <name> VERB …`` (``verbs`` is argparse's sub-parsers
        action): each verb's parser sets the default ``operation``, a function of the parsed
        arguments giving the operation's JSON (a dict with ``op``)."""

    def explorers(self, harness: Harness) -> list[Explorer]:
        """Scenario exploration of the SUT over this run's simulators (``--explore``,
        conformance/exploration.py): one explorer per part the SUT claims (e.g. a channel),
        each with its own ``part`` name; empty when there is nothing to explore."""


def setup_mistake(
    answered: int | None, *, sent: str, path_fix: str, credentials_fix: str
) -> str | None:
    """The first-contact verdict on the answer to ``sent`` (:meth:`RunningVendor.first_contact`):
    a wrong path (404, 405) or refused credentials (401, 403) as one message naming the fix;
    None for any other answer, or none."""
    if answered in WRONG_PATH:
        return f"{sent} was answered {answered}: nothing is served at that path. {path_fix}"
    if answered in REFUSED:
        return f"{sent} was answered {answered} to the credentials given. {credentials_fix}"
    return None


def _package_dir() -> Path:
    return Path(__file__).resolve().parent


@cache
def discover() -> dict[str, Vendor]:
    """Every vendor plug-in, by name (alphabetical)."""
    found: dict[str, Vendor] = {}
    for info in pkgutil.iter_modules([str(_package_dir())]):
        if not info.ispkg:
            continue
        module_name = f"conformance.{info.name}.vendor"
        if importlib.util.find_spec(module_name) is None:
            continue
        plugin: Vendor = importlib.import_module(module_name).VENDOR
        if plugin.name != info.name:
            raise RuntimeError(f"{module_name}: VENDOR.name is {plugin.name!r}, not {info.name!r}")
        found[plugin.name] = plugin
    return dict(sorted(found.items()))


def vendor(name: str) -> Vendor:
    """The plug-in called ``name``; KeyError naming the known ones otherwise."""
    try:
        return discover()[name]
    except KeyError:
        raise KeyError(f"no vendor plug-in {name!r} (known: {', '.join(discover())})") from None
