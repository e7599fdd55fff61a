"""Scenario exploration against the reference SUT: scenarios per minute, and where the budget
goes (inside operations and judging, i.e. the SUT, the simulators and the observer, vs the
engine's own generation and shrinking), against the scripted APL-OBS-01 check of the same run.

    python benchmarks/bench_exploration.py [--budget 60] [--seed 1]

One `pytest conformance/apple -k APL-OBS-01 --explore=BUDGET` in a fresh process, as a user
runs it; the figures come from the report.json it writes. The baseline is the scripted check
that judges the same requirement in the same run: a generated scenario should cost about what
that check costs (both wait the same one second for a late second report). Last line:
`ratio=<seconds per scenario / seconds of the scripted check> target=<=1.5`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = 1.5


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--budget", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "pytest", "conformance/apple", "-k", "APL-OBS-01"]
        command += ["-q", "-p", "no:cacheprovider", f"--report-dir={tmp}"]
        command += [f"--explore={args.budget:g}", f"--explore-seed={args.seed}"]
        proc = subprocess.run(
            command,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=args.budget + 600,
        )
        report = json.loads((Path(tmp) / "latest" / "report.json").read_text())
    if proc.returncode != 0:
        sys.exit(f"the reference SUT failed:\n{proc.stdout[-2000:]}")
    explored = next(x for x in report["exploration"] if x.get("vendor") == "apple")
    scripted = next(
        c
        for r in report["requirements"]
        if r["id"] == "APL-OBS-01"
        for c in r["checks"]
        if not c["name"].startswith("exploration::")
    )
    spent, driving, scenarios = explored["spent_s"], explored["driving_s"], explored["scenarios"]
    per_scenario = spent / max(scenarios, 1)
    print(
        f"Apple exploration vs reference SUT: {scenarios} scenarios ({explored['steps']} steps, "
        f"{explored['judged']} judged) in {spent:.1f} s of a {args.budget:g} s budget: "
        f"{scenarios / spent * 60:.0f} scenarios/min, {per_scenario:.2f} s each"
    )
    print(
        f"  inside operations and judging (SUT, simulators, observer): {driving / spent:.0%}; "
        f"engine (Hypothesis generation, shrinking, bookkeeping): {1 - driving / spent:.0%}"
    )
    print(f"  the scripted APL-OBS-01 check of the same run: {scripted['duration_s']:.2f} s")
    print(f"ratio={per_scenario / scripted['duration_s']:.2f} target=<={TARGET}")


if __name__ == "__main__":
    main()
