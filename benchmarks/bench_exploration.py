"""Scenario exploration against the reference SUT, every vendor and every part (Apple receiver,
Pelion callback, Pelion WebSocket, Ivanti subscriber): scenarios per minute, and where the
budget goes: inside operations and judging (the SUT, the simulators, the observer: what a
scenario needs) vs the engine's own generation, shrinking and bookkeeping.

    python benchmarks/bench_exploration.py [--budget 60] [--seed 1]

One `pytest conformance --explore=BUDGET` in a fresh process, as a user runs it, with the
scripted "processed once" check of each vendor (and the WebSocket's PEL-MSG-01 for
notifications) selected, so each part's cost per scenario can be set beside the scripted check
that judges the same thing. The figures come from the report.json it writes.

The baseline is the time the same run spent inside operations and judging: the harness's own
engine should not be the bottleneck. Last line: `ratio=<the largest engine time / time inside
operations and judging, over the parts> target=<=0.25`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TARGET = 0.25
# The scripted check beside each part: the test whose requirement the part's scenarios judge.
SCRIPTED = {
    ("apple", "receiver"): "test_repeated_notification_processed_once",
    ("pelion", "callback"): "test_a_resent_batch_is_processed_once",
    ("pelion", "websocket"): "test_accepts_each_kind[websocket-notifications]",
    ("ivanti", "subscriber"): "test_processes_each_event_once",
}
SELECT = (
    "APL-OBS-01 or PEL-OBS-01 or IVT-OBS-01 or "
    "(test_accepts_each_kind and websocket and notifications)"
)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--budget", type=float, default=60.0, help="seconds per vendor")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "pytest", "conformance", "-k", SELECT]
        command += ["-q", "-p", "no:cacheprovider", f"--report-dir={tmp}"]
        command += [f"--explore={args.budget:g}", f"--explore-seed={args.seed}"]
        proc = subprocess.run(
            command,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=3 * args.budget + 900,
        )
        report = json.loads((Path(tmp) / "latest" / "report.json").read_text())
    if proc.returncode != 0:
        sys.exit(f"the reference SUT failed:\n{proc.stdout[-2000:]}")
    durations = _scripted_durations(report)
    ratios = []
    for explored in report["exploration"]:
        if explored.get("unavailable"):
            sys.exit(f"not explored: {explored}")
        vendor, part = explored["vendor"], explored["part"]
        spent, driving, scenarios = (
            explored["spent_s"],
            explored["driving_s"],
            explored["scenarios"],
        )
        engine = max(spent - driving, 0.0)
        per_scenario = spent / max(scenarios, 1)
        scripted = durations.get(SCRIPTED[(vendor, part)])
        print(
            f"{vendor} {part}: {scenarios} scenarios ({explored['steps']} steps, "
            f"{explored['judged']} judged) in {spent:.1f} s of a {explored['budget_s']:g} s "
            f"budget: {scenarios / max(spent, 1e-9) * 60:.0f} scenarios/min, "
            f"{per_scenario:.2f} s each"
            + (f" (the scripted check: {scripted:.2f} s)" if scripted is not None else "")
        )
        print(
            f"  inside operations and judging (SUT, simulators, observer): {driving / spent:.0%}; "
            f"engine (Hypothesis generation, shrinking, bookkeeping): {engine / spent:.0%}"
        )
        if explored["failures"] or explored["flaky"]:
            sys.exit(f"the reference SUT failed an exploration: {explored}")
        ratios.append(engine / max(driving, 1e-9))
    print(f"ratio={max(ratios):.3f} target=<={TARGET}")


def _scripted_durations(report: dict[str, Any]) -> dict[str, float]:
    """Each scripted check's duration, by test name (without its module)."""
    found = {}
    for requirement in report["requirements"]:
        for check in requirement["checks"]:
            name = check["name"]
            if not name.startswith("exploration::"):
                found[name.rsplit("::", 1)[-1]] = check["duration_s"]
    return found


if __name__ == "__main__":
    main()
