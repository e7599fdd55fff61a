"""``conformance-report``: compare runs from their ``report.json`` files (docs/sut-contract.md §7).

``diff A B`` says what changed requirement by requirement (text, or Markdown with ``--md``) and
exits 1 when B regresses against A. ``matrix R1 R2 … -o matrix.html`` writes one
self-contained page comparing the runs side by side: several SUTs, versions of one SUT, or one
SUT under the vendor-variant options. Both read either report schema version; a file that is
not a report is one message and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from conformance.gate import GateFileError, compare, read_report
from conformance.text import printable

__all__ = ["diff_text", "main", "matrix_html"]

REASON_LIMIT = 200  # characters of a verdict's reason shown in a diff line or a matrix cell


def _verdicts(report: dict[str, Any]) -> dict[str, str]:
    return {r["id"]: r["verdict"] for r in report["requirements"]}


def _reasons(report: dict[str, Any]) -> dict[str, str]:
    return {r["id"]: _short(str(r.get("reason", ""))) for r in report["requirements"]}


def _short(text: str, limit: int = REASON_LIMIT) -> str:
    text = printable(" ".join(text.split()))
    return text if len(text) <= limit else text[:limit] + "…"


def _part(data: dict[str, Any], key: str) -> dict[str, Any]:
    """``data[key]`` when it is a table, else an empty one (an older or edited report)."""
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def _digest(report: dict[str, Any]) -> str | None:
    run = report.get("run")
    catalogue = run.get("catalogue") if isinstance(run, dict) else None
    digest = catalogue.get("digest") if isinstance(catalogue, dict) else None
    return digest if isinstance(digest, str) else None


def _describe(label: str, path: str, report: dict[str, Any]) -> str:
    sut = _part(report, "sut")
    digest = _digest(report)
    return (
        f"{label}: {path} (run {report.get('run_id', '?')}, SUT {sut.get('name', '?')}, "
        f"{report['schema']}, catalogue {digest[:19] + '…' if digest else 'digest not recorded'})"
    )


def diff_text(a_path: str, a: dict[str, Any], b_path: str, b: dict[str, Any], *, md: bool) -> str:
    """What changed from A to B."""
    before, after = _verdicts(a), _verdicts(b)
    why = _reasons(b)
    changes = compare(before, after)
    regressions = changes["regressions"]
    improvements = changes["improvements"]  # failed there, passes now
    other = [
        rid for rid in changes["changed"] if rid not in regressions and rid not in improvements
    ]
    same = _digest(a) is not None and _digest(a) == _digest(b)
    both = len([rid for rid in after if rid in before])
    note = (
        f"same catalogue: compared on {both} requirements"
        if same
        else f"catalogues differ (or one is not recorded): compared on the {both} requirements "
        "both know"
    )
    sections = [
        ("Regressions", regressions),
        ("Improvements", improvements),
        ("Other changes", other),
        ("Only in A", changes["only_before"]),
        ("Only in B", changes["only_after"]),
    ]
    verdict = f"B regresses against A ({len(regressions)})" if regressions else "no regression"
    if md:
        lines = [
            f"## Conformance diff: {verdict}",
            "",
            f"- {_md(_describe('A', a_path, a))}",
            f"- {_md(_describe('B', b_path, b))}",
            f"- {_md(note)}; {both - len(changes['changed'])} unchanged",
            "",
        ]
        for title, ids in sections:
            if not ids:
                continue
            lines += [
                f"### {title} ({len(ids)})",
                "",
                "| Requirement | A | B | B's reason |",
                "|---|---|---|---|",
            ]
            for rid in ids:
                lines.append(
                    f"| {_md(rid)} | {_md(before.get(rid, '—'))} | {_md(after.get(rid, '—'))} "
                    f"| {_md(why.get(rid, ''))} |"
                )
            lines.append("")
        return "\n".join(lines)
    lines = [_describe("A", a_path, a), _describe("B", b_path, b), note, ""]
    for title, ids in sections:
        if not ids:
            continue
        lines.append(f"{title} ({len(ids)}):")
        for rid in ids:
            reason = f"  {why[rid]}" if rid in why and after.get(rid) != "pass" else ""
            lines.append(f"  {rid}: {before.get(rid, '—')} -> {after.get(rid, '—')}{reason}")
    lines.append(f"{both - len(changes['changed'])} unchanged; {verdict}")
    return "\n".join(lines)


def _md(text: object) -> str:
    """Safe in a Markdown table cell or list item: one line, no pipe or HTML."""
    flat = printable(" ".join(str(text).split()))
    return flat.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def matrix_html(named: Sequence[tuple[str, dict[str, Any]]]) -> str:
    """One self-contained page: a column per run, a row per requirement."""
    import jinja2

    order: dict[str, dict[str, Any]] = {}
    for _, report in named:
        for r in report["requirements"]:
            order.setdefault(
                r["id"],
                {
                    "id": r["id"],
                    "level": r.get("level", ""),
                    "statement": _short(str(r.get("statement", "")), 300),
                },
            )
    runs = []
    for path, report in named:
        sut = _part(report, "sut")
        options = _part(_part(report, "run"), "options")
        runs.append(
            {
                "path": path,
                "run_id": str(report.get("run_id", "")),
                "sut": str(sut.get("name", "")),
                "schema": report["schema"],
                "options": {str(k): str(v) for k, v in options.items()},
                "verdicts": _verdicts(report),
                "reasons": _reasons(report),
                "summary": _part(report, "summary"),
            }
        )
    # The options that tell the runs apart (a vendor variant), shown in each column's head.
    keys = sorted({k for run in runs for k in run["options"]})
    varying = [k for k in keys if len({run["options"].get(k) for run in runs}) > 1]
    rows = []
    for rid, row in order.items():
        cells = [(run["verdicts"].get(rid), run["reasons"].get(rid, "")) for run in runs]
        judged = [v for v, _ in cells if v is not None]
        rows.append(
            {
                **row,
                "cells": cells,
                "passes": sum(v == "pass" for v in judged),
                "judged": len(judged),
            }
        )
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template("matrix.html.j2").render(runs=runs, rows=rows, varying=varying)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="conformance-report", description="Compare conformance runs from their report.json."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    diff = commands.add_parser("diff", help="what changed from A to B; exit 1 when B regresses")
    diff.add_argument("a", metavar="A", help="the earlier report.json")
    diff.add_argument("b", metavar="B", help="the later report.json")
    diff.add_argument(
        "--md", dest="markdown", action="store_true", help="Markdown (for a pull request comment)"
    )
    matrix = commands.add_parser("matrix", help="one HTML page comparing runs side by side")
    matrix.add_argument("reports", nargs="+", metavar="REPORT", help="report.json files")
    matrix.add_argument(
        "-o", "--output", required=True, metavar="FILE.html", help="the page to write"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "diff":
            a, b = read_report(Path(args.a), "A"), read_report(Path(args.b), "B")
            print(diff_text(args.a, a, args.b, b, md=args.markdown))
            return 1 if compare(_verdicts(a), _verdicts(b))["regressions"] else 0
        reports = [(path, read_report(Path(path), "REPORT")) for path in args.reports]
        out = Path(args.output)
        out.write_text(matrix_html(reports), encoding="utf-8")
        print(f"conformance-report: wrote {out} ({len(reports)} runs)")
        return 0
    except GateFileError as exc:
        print(f"conformance-report: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"conformance-report: cannot write {args.output}: {exc.strerror}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
