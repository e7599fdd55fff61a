"""Where a benchmark's CPU goes, from py-spy's raw (collapsed) output: samples per function,
and with a second profile of the same work, what the second spends beyond the first.

    py-spy record -f raw -o plain.txt -- python benchmarks/bench_apple_notifier.py --only plain
    py-spy record -f raw -o notifier.txt -- python benchmarks/bench_apple_notifier.py --only notifier
    python benchmarks/profile_summary.py plain.txt notifier.txt

Only samples taken inside the timed loop count (a stack through ``run_concurrently``), so set-up
(certificates, sessions, bodies) is left out. Functions are named without line numbers; "own"
is the samples whose innermost frame is the function, "all" those with it anywhere on the stack.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

TIMED = "run_concurrently"


def load(path: Path) -> tuple[Counter[str], Counter[str], int]:
    """(own samples, all samples) per function and the number of samples, timed loop only."""
    own: Counter[str] = Counter()
    every: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if TIMED not in stack:
            continue
        frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")]
        samples = int(count)
        total += samples
        own[frames[-1]] += samples
        for frame in set(frames):
            every[frame] += samples
    return own, every, total


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("profiles", type=Path, nargs="+", help="one profile, or a base and another")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    own, every, total = load(args.profiles[-1])
    if len(args.profiles) == 1:
        print(f"{total} samples in the timed loop")
        for name, samples in own.most_common(args.top):
            print(
                f"{100 * samples / total:5.1f}% own {100 * every[name] / total:5.1f}% all  {name}"
            )
        return
    base_own, base_every, base_total = load(args.profiles[0])
    print(f"{base_total} samples in the base's timed loop, {total} in the other's")
    for title, mine, theirs in (("own", own, base_own), ("all", every, base_every)):
        print(f"-- {title}: samples beyond the base (share of the other's samples)")
        extra = sorted(
            ((mine[k] - theirs[k], k) for k in mine.keys() | theirs.keys()), reverse=True
        )
        for samples, name in extra[: args.top]:
            print(f"{samples:6d} {100 * samples / total:5.1f}%  {name}")


if __name__ == "__main__":
    main()
