"""A deliberate restart of the launched SUT, the way a deploy does it (docs/sut-contract.md §2):
SIGTERM, wait for its exit, start it again with the same environment, wait until it is ready.

The restart checks (APL-REC-01, PEL-REC-01, IVT-SESS-03) judge what that does to each channel.
They run after every other check (``@pytest.mark.restarts_sut``: the plugin orders them last,
before the run-wide GEN checks), so the SUT's absence disturbs no other check; while it is
away the harness does not take its silence as the SUT going down (``Harness.restarting``).
Every wait is bounded: a SUT that ignores SIGTERM gets SIGKILL after :data:`STOP_GRACE_S`,
and one that is not ready again within its ``[process] ready_timeout_s`` fails the check that
restarted it and is taken as down for the rest of the run. The output of both lives goes to
the same ``sut.log`` (a line marks where the new life begins).
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from conformance.harness import Harness
from conformance.launcher import LaunchError, SutProcess
from conformance.text import brief
from conformance.verdicts import Check

__all__ = ["STOP_GRACE_S", "WHILE_STOPPING_AFTER_S", "SutRestart", "restarted_sut"]

# How long a SUT may take to exit after SIGTERM before it gets SIGKILL (real seconds): a deploy
# does not wait for ever either (Kubernetes' default grace period is 30 s; a test run, less).
STOP_GRACE_S = 10.0
# When what happens "while stopping" happens, real seconds after the SIGTERM: inside any drain
# window worth the name, and late enough that the SUT has acted on the signal. Sent at once, it
# raced the SUT's signal handler and was taken as if no SIGTERM had come (a loop that reads the
# request before it runs the handler), so a SUT that loses what it takes while draining passed.
WHILE_STOPPING_AFTER_S = 0.5
NOT_LAUNCHED = (
    "the harness did not launch the SUT (its manifest has no [process] section), so it cannot "
    "restart it"
)


@dataclass
class SutRestart:
    """One restart, in two steps a check calls in order: :meth:`stop`, then :meth:`start`;
    what happens between them happens while the SUT is down."""

    harness: Harness
    check: Check
    stopped_after_s: float | None = None  # real seconds from SIGTERM to its exit
    exit_code: int | None = None
    killed: bool = False  # it outlived STOP_GRACE_S after SIGTERM
    ready_after_s: float | None = None  # real seconds from its start to ready again
    down_since_real_s: float | None = None  # harness.clock.real() at the SIGTERM
    back_since_real_s: float | None = None  # harness.clock.real() when it started again
    facts: list[str] = field(default_factory=list)

    @property
    def sut(self) -> SutProcess:
        assert self.harness.sut is not None
        return self.harness.sut

    def stop(self, while_stopping: Callable[[], None] | None = None) -> None:
        """SIGTERM, then ``while_stopping()`` (e.g. send what arrives during the shutdown)
        :data:`WHILE_STOPPING_AFTER_S` later (sooner if the SUT has exited by then), then wait
        for the exit, bounded (SIGKILL after :data:`STOP_GRACE_S`)."""
        sut = self.sut
        self.down_since_real_s = self.harness.clock.real()
        sut.terminate()
        self._record("restart-stop", f"SIGTERM to the SUT (pid {sut.proc.pid})")
        try:
            if while_stopping is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    sut.proc.wait(WHILE_STOPPING_AFTER_S)  # the scenario's timing, bounded
                while_stopping()
        finally:
            self.exit_code = sut.stop(STOP_GRACE_S)
            assert sut.terminated_at is not None
            self.stopped_after_s = time.monotonic() - sut.terminated_at
            self.killed = sut.killed
        how = (
            f"ignored SIGTERM for {STOP_GRACE_S:g} s: killed (SIGKILL)"
            if self.killed
            else f"exited with status {self.exit_code} {self.stopped_after_s:.1f} s after SIGTERM"
        )
        self.facts.append(f"the SUT {how}")
        self._record("restart-exited", how)

    def start(self) -> None:
        """Start it again with the same command and environment and wait until it is ready
        (its readiness probe, bounded by ``ready_timeout_s``). When it does not come back, the
        SUT is taken as down and the check fails with the cause (AssertionError)."""
        old = self.sut
        self.back_since_real_s = self.harness.clock.real()
        try:
            self.harness.sut = old.restarted()
            self._record("restart-start", f"started {old.section.command} again")
            self.ready_after_s = self.harness.sut.wait_ready(self.harness.probe_context())
        except LaunchError as exc:
            self.harness.restarting = None
            self.facts.append("it did not come back")
            raise AssertionError(
                self.harness.mark_down(f"the SUT did not come back after a restart: {exc}")
            ) from None
        self.facts.append(f"it was ready again {self.ready_after_s:.1f} s after its start")
        self._record("restart-ready", f"ready again after {self.ready_after_s:.1f} s")

    def describe(self) -> str:
        """What the restart did, for the report (both lives' output is in ``sut.log``)."""
        return "; ".join(self.facts) + f" (the output of both lives is in {self.sut.log_path.name})"

    def _record(self, kind: str, text: str) -> None:
        self.harness.recorder.record("harness", "--", "sut", kind, text)


@contextmanager
def restarted_sut(harness: Harness, check: Check) -> Iterator[SutRestart]:
    """A restart of the launched SUT for ``check`` (``not-verified`` when the harness did not
    launch it). Leaving the block brings the SUT back if the check stopped it and did not start
    it again; either way the restart ends there, and its facts become a note."""
    if harness.manifest.process is None or harness.sut is None:
        raise check.not_verified(NOT_LAUNCHED)
    harness.require_sut()
    if problem := harness.sut_alive():  # e.g. it exited in an earlier check: nothing to restart
        raise check.not_verified(f"the SUT was down before this check could restart it: {problem}")
    restart = SutRestart(harness, check)
    harness.restarting = harness.cause
    try:
        yield restart
    finally:
        try:
            # Stopped and not started again (the check raised), and not already found not to
            # come back: start it, so the checks after this one find it.
            if (
                restart.stopped_after_s is not None
                and restart.ready_after_s is None
                and harness.restarting is not None
            ):
                with contextlib.suppress(AssertionError):  # marked down; the check's error wins
                    restart.start()
        finally:
            harness.restarting = None
            if restart.facts:
                check.note(brief(restart.describe(), 1000))
