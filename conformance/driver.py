"""What every vendor's checks share: the observer (its records, counting reports, the fence that
makes sure they have arrived), reproducer bodies, and the fixture that skips an undeclared vendor.

A vendor's checks use its driver (``conformance/<vendor>/driver.py``), a :class:`VendorDriver`
that adds the vendor's verbs (deliver, publish, drop a connection…). Its ``conftest.py`` only
declares the fixture, with :func:`running_vendor`.

Many helpers here answer a :data:`~simulators.problem.Problem`: ``None`` when all is well, else
a sentence saying what is wrong. A check turns that sentence into its verdict.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import pytest

from conformance.harness import Harness
from conformance.vendors import vendor
from simulators.problem import Problem

__all__ = [
    "DUPLICATE_SETTLE_S",
    "INLINE_BODY_LIMIT",
    "OBSERVER_WAIT_S",
    "VendorDriver",
    "curl_command",
    "inline_text",
    "processed_once",
    "prose",
    "running_vendor",
]

# How long a check waits for the SUT's observer report of something it acknowledged.
OBSERVER_WAIT_S = 10.0
# Once a SUT is known to report nothing, a check waits only this long.
SILENT_OBSERVER_WAIT_S = 2.0
# Judging "once": after every judged item and the marker were reported, a second report of one
# is still awaited this long (a SUT processing concurrently may report a copy late).
DUPLICATE_SETTLE_S = 1.0
INLINE_BODY_LIMIT = 1_024  # bytes of a reproducer's body written in the command itself

Item = TypeVar("Item", bound=Hashable)
Running = TypeVar("Running")


@dataclass(repr=False)
class VendorDriver:
    """The observer side of a vendor's driver. Subclasses set :attr:`vendor_name` and
    :attr:`record_shape` and implement their marker in :meth:`fence`."""

    vendor_name: ClassVar[str]  # the observer route
    record_shape: ClassVar[str]  # a valid record, for the message when records are refused

    harness: Harness

    def __post_init__(self) -> None:
        self.observer_silent = False  # set once the SUT is known to report nothing
        # How long a fence waits for the items it awaits before its marker (None: as long as
        # for any report). An exploration waits less: a scenario that loses an item would
        # cost the whole wait on every play, and a failure only counts once it comes back on
        # replay.
        self.awaiting_s: float | None = None
        # An exploration's wall-time bound (time.monotonic()): no wait for reports outlives it.
        self.deadline: float | None = None

    def records(self) -> list[dict[str, Any]]:
        """The records the SUT reported, in arrival order."""
        return [r for r in self.harness.observer.records(self.vendor_name) if isinstance(r, dict)]

    def count_keyed(
        self, wanted: Mapping[str, Item], timeout: float, *, more_than: int = 0
    ) -> dict[Item, int]:
        """Reports per item, waiting (at most ``timeout``) until every item was reported more
        than ``more_than`` times, in any order (a SUT may process concurrently). ``wanted``
        maps each observer key of an item (the vendor's ``observer_keys``) to the item."""
        if self.deadline is not None:
            timeout = max(0.0, min(timeout, self.deadline - time.monotonic()))
        return self.harness.observer.count_reports(
            self.vendor_name,
            wanted,
            vendor(self.vendor_name).observer_keys,
            timeout,
            more_than=more_than,
        )

    @property
    def observer_wait(self) -> float:
        return SILENT_OBSERVER_WAIT_S if self.observer_silent else OBSERVER_WAIT_S

    def fence_with(
        self, awaiting: Mapping[str, Hashable], send_marker: Callable[[], Mapping[str, Hashable]]
    ) -> Problem:
        """Wait for the reports of ``awaiting`` (in any order, bounded), then send a marker with
        ``send_marker`` (it returns the marker's keys, or raises :class:`MarkerRefused`) and
        wait for its report, so that everything the SUT processed before it has been reported.
        ``None`` when fenced; else why the observer cannot be relied on in this run (the check
        is then not-verified: the SUT took no marker, or never reported anything). The marker
        is sent in a neutral form, never under the condition the check probes (the vendor
        driver's ``fence`` sees to it). A SUT whose reports the observer refused fails here: it
        reports, in a shape nobody can read; so does one that reported during the run but not
        this marker: a missing report is then evidence, not a reason to judge less."""
        wait = self.observer_wait
        self.count_keyed(awaiting, wait if self.awaiting_s is None else min(wait, self.awaiting_s))
        try:
            marker = send_marker()
        except MarkerRefused as no_marker:
            return str(no_marker)
        if any(self.count_keyed(marker, wait).values()):
            return None
        if self.deadline is not None and time.monotonic() >= self.deadline:
            from conformance.exploration import BudgetSpent

            raise BudgetSpent("the budget ran out while awaiting the marker's report")
        refused = self.harness.observer.refusals(self.vendor_name)
        if refused.total():
            reason, first = next(iter(refused.first.items()))
            raise AssertionError(
                f"the observer refused {refused.total()} report(s) from the SUT ({reason}: "
                f"{first}); a record is {self.record_shape}"
            )
        earlier = len(self.records())
        self.observer_silent = not earlier
        if self.observer_silent:
            return "the SUT reported nothing to the observer"
        missing = [str(k) for k, n in self.count_keyed(awaiting, 0).items() if not n]
        raise AssertionError(
            f"the SUT reported {earlier} record(s) to the observer in this run, but not the "
            f"marker it took after the judged items within {wait:g} s"
            + (f", nor {len(missing)} of the judged items (e.g. {missing[0]})" if missing else "")
        )


class MarkerRefused(Exception):
    """The SUT did not take the fence's marker: its reports cannot be awaited."""


def processed_once(counts: Mapping[Item, int], acknowledged: Iterable[Item]) -> Problem:
    """ "Processed once", judged on observer report counts per item: each ``acknowledged`` one
    was reported exactly once, any other at most once (the vendor may have given up on it
    before the SUT got it). The scripted checks and scenario exploration both judge with it."""
    wanted = set(acknowledged)
    never = {item: c for item, c in counts.items() if item in wanted and c < 1}
    if never:
        return f"an acknowledged item was never reported: {never}"
    again = {item: c for item, c in counts.items() if c > 1}
    if again:
        return f"processed more than once: {again}"
    return None


def running_vendor(harness: Harness, name: str, kind: type[Running]) -> Running:
    """The running simulators of vendor ``name``; the check is skipped when the SUT does not
    declare that vendor's section."""
    running = harness.running.get(name)
    if not isinstance(running, kind) or getattr(running, "section", None) is None:
        pytest.skip(f"the SUT does not declare the {name} profile")
    return running


def inline_text(data: bytes, limit: int = INLINE_BODY_LIMIT) -> str | None:
    """``data`` as text to write inside a reproducer command: short, printable UTF-8; else
    None (the body goes to a file beside the report, ``harness.body_file``)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text if len(data) <= limit and text.isprintable() else None


def curl_command(
    harness: Harness,
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    cafile: str | None = None,
) -> str:
    """A ``curl`` command that sends this request again and prints the status it got (run from
    the report's folder: a large or binary body is written to ``bodies/`` beside the report)."""
    parts = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}\\n", "-X", method]
    if cafile:
        parts += ["--cacert", cafile]
    for key, value in headers.items():
        parts += ["-H", f"{key}: {value}"]
    parts += ["--data-binary", inline_text(body) or "@" + harness.body_file(body)]
    return shlex.join([*parts, url])


def prose(items: Iterable[object]) -> str:
    """``a, b and c``."""
    words = [str(i) for i in items]
    return (
        ", ".join(words[:-1]) + (" and " if len(words) > 1 else "") + (words[-1] if words else "")
    )
