"""The CI gate a team adopts step by step (docs/sut-contract.md §7): waivers, a baseline, and
the run's pass or fail decided from them.

Without waivers or a baseline the gate is the plain rule: a requirement whose verdict is
``fail`` or ``error`` fails the run. A valid waiver turns a ``fail`` into ``waived`` (an
``error`` is the harness's fault and never waived); an expired waiver fails the run; a
baseline narrows the failures that count to regressions. Every decision is pure: it takes
the requirements, the waivers, the baseline and today's date, and returns what to report.

Imported when a conformance run starts and by ``conformance-report``: the standard library only.
"""

from __future__ import annotations

import datetime
import difflib
import json
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "READABLE_SCHEMAS",
    "Baseline",
    "GateFileError",
    "Waiver",
    "apply_gate",
    "failing",
    "load_baseline",
    "load_waivers",
    "read_report",
]

READABLE_SCHEMAS = ("conformance-report/1", "conformance-report/2")
FAILING = frozenset({"fail", "error", "waived"})  # a requirement the SUT does not meet
_WAIVER_KEYS = frozenset({"id", "reason", "expires"})
MAX_REASON = 1_000  # characters of a waiver's reason (every report shows it)
MAX_GATE_FILE_BYTES = 20_000_000  # a report is under 1 MB; anything far larger is not one


class GateFileError(ValueError):
    """A waiver file or a report that cannot be used: the message names the file and the fix."""


def failing(verdict: str) -> bool:
    """The SUT does not meet the requirement (whether or not that fails the run)."""
    return verdict in FAILING


@dataclass(frozen=True)
class Waiver:
    """``[[waiver]]``: a requirement a team knowingly fails, why, and until when (inclusive)."""

    id: str
    reason: str
    expires: datetime.date

    def expired(self, today: datetime.date) -> bool:
        return today > self.expires


def _read_bytes(path: Path, what: str) -> bytes:
    try:
        if path.stat().st_size > MAX_GATE_FILE_BYTES:
            raise GateFileError(
                f"{what}={path}: {path.stat().st_size} bytes is not a {what[2:]} file"
            )
        return path.read_bytes()
    except FileNotFoundError:
        raise GateFileError(f"{what}={path}: no such file") from None
    except IsADirectoryError:
        raise GateFileError(f"{what}={path}: a folder, not a file") from None
    except OSError as exc:
        raise GateFileError(f"{what}={path}: cannot read it ({exc.strerror})") from None


def _date(value: object) -> datetime.date | None:
    if isinstance(value, datetime.datetime):
        return None
    if isinstance(value, datetime.date):
        return value
    if isinstance(value, str):
        try:
            return datetime.date.fromisoformat(value.strip())
        except ValueError:
            return None
    return None


def load_waivers(path: Path, known_ids: Collection[str]) -> tuple[Waiver, ...]:
    """The waivers in ``path``; :class:`GateFileError` naming the first problem otherwise."""
    where = f"--waivers={path}"
    raw = _read_bytes(path, "--waivers")
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise GateFileError(f"{where}: not UTF-8 text (write it as a TOML file)") from None
    except tomllib.TOMLDecodeError as exc:
        raise GateFileError(f"{where}: not valid TOML: {exc}") from None
    except RecursionError:
        raise GateFileError(f"{where}: nested too deeply to be a waiver file") from None
    if extra := sorted(set(data) - {"waiver"}):
        raise GateFileError(
            f"{where}: unknown top-level key(s) {extra}; write each waiver as a [[waiver]] table "
            "with id, reason and expires = 2027-03-31"
        )
    tables = data.get("waiver", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise GateFileError(
            f"{where}: write each waiver as a [[waiver]] table (an array of tables)"
        )
    waivers: dict[str, Waiver] = {}
    for number, table in enumerate(tables, 1):
        at = f"{where}: waiver #{number}"
        if extra := sorted(set(table) - _WAIVER_KEYS):
            raise GateFileError(f"{at}: unknown key(s) {extra} (a waiver has id, reason, expires)")
        rid = table.get("id")
        if not isinstance(rid, str) or not rid.strip():
            raise GateFileError(f'{at}: give the requirement it waives, id = "APL-AUTH-01"')
        rid = rid.strip()
        at = f"{where}: waiver {rid}"
        if rid not in known_ids:
            close = difflib.get_close_matches(rid, list(known_ids), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise GateFileError(f"{at}: no such requirement in the catalogue{hint}")
        if rid in waivers:
            raise GateFileError(f"{at}: waived twice; keep one [[waiver]] per requirement")
        reason = table.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            raise GateFileError(
                f'{at}: give the reason it is waived, reason = "…" (it is shown in every report)'
            )
        if len(reason) > MAX_REASON:
            raise GateFileError(
                f"{at}: the reason has {len(reason)} characters; keep it under {MAX_REASON} "
                "(link a ticket for the rest): it is shown in every report"
            )
        expires = _date(table.get("expires"))
        if expires is None:
            given = table.get("expires")
            raise GateFileError(
                f"{at}: expires = {given!r} is not a date; write expires = 2027-03-31 "
                "(the last day the waiver holds)"
                if "expires" in table
                else f"{at}: give the last day it holds, expires = 2027-03-31"
            )
        waivers[rid] = Waiver(rid, " ".join(reason.split()), expires)
    return tuple(waivers.values())


def read_report(path: Path, what: str = "report") -> dict[str, Any]:
    """A ``report.json`` of this tool (either schema version), checked enough to compare:
    :class:`GateFileError` naming the file otherwise."""
    raw = _read_bytes(path, what)
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GateFileError(f"{what}={path}: not a JSON report ({exc})") from None
    except RecursionError:
        raise GateFileError(f"{what}={path}: nested too deeply to be a report") from None
    schema = data.get("schema") if isinstance(data, dict) else None
    if schema not in READABLE_SCHEMAS:
        raise GateFileError(
            f"{what}={path}: not a conformance report (schema {schema!r}; expected one of "
            f"{', '.join(READABLE_SCHEMAS)}): give the report.json a run wrote"
        )
    reqs = data.get("requirements")
    if not isinstance(reqs, list) or not all(
        isinstance(r, dict) and isinstance(r.get("id"), str) and isinstance(r.get("verdict"), str)
        for r in reqs
    ):
        raise GateFileError(
            f"{what}={path}: its requirements are damaged (each needs an id and a verdict)"
        )
    return dict(data)


@dataclass(frozen=True)
class Baseline:
    """The verdicts of an earlier run the gate compares with."""

    path: str
    run_id: str
    catalogue_digest: str | None
    verdicts: Mapping[str, str]


def load_baseline(path: Path) -> Baseline:
    data = read_report(path, "--baseline")
    if data.get("startup_error"):
        raise GateFileError(
            f"--baseline={path}: that run could not start (every requirement is error), so it "
            "says nothing to compare with; take the baseline from a run that started"
        )
    run = data.get("run")
    catalogue = run.get("catalogue") if isinstance(run, dict) else None
    digest = catalogue.get("digest") if isinstance(catalogue, dict) else None
    return Baseline(
        path=str(path),
        run_id=str(data.get("run_id", "")),
        catalogue_digest=digest if isinstance(digest, str) else None,
        verdicts={r["id"]: _plain(r) for r in data["requirements"]},
    )


def _plain(req: Mapping[str, Any]) -> str:
    """The verdict a requirement had; a waived one was failing."""
    return str(req["verdict"])


def compare(before: Mapping[str, str], after: Mapping[str, str]) -> dict[str, list[str]]:
    """Requirement by requirement, on the IDs both runs know: what got worse and better.

    A regression is a requirement the SUT met (or that was not judged) before and fails now,
    or one only the later run knows that fails; a failure in both is known."""
    both = [rid for rid in after if rid in before]
    return {
        "regressions": [
            rid for rid in after if failing(after[rid]) and not failing(before.get(rid, "pass"))
        ],
        "new_failures": [rid for rid in after if rid not in before and failing(after[rid])],
        "improvements": [rid for rid in both if failing(before[rid]) and after[rid] == "pass"],
        "known_failures": [rid for rid in both if failing(before[rid]) and failing(after[rid])],
        "changed": [rid for rid in both if before[rid] != after[rid]],
        "only_before": [rid for rid in before if rid not in after],
        "only_after": [rid for rid in after if rid not in before],
    }


def apply_gate(
    requirements: list[dict[str, Any]],
    *,
    waivers: tuple[Waiver, ...] = (),
    baseline: Baseline | None = None,
    catalogue_digest: str | None = None,
    today: datetime.date,
) -> dict[str, Any]:
    """Mark waived requirements (in place) and decide the run: the report's ``"gate"``."""
    by_id = {r["id"]: r for r in requirements}
    waiver_rows: list[dict[str, Any]] = []
    expired: list[str] = []
    for w in waivers:
        req = by_id.get(w.id)
        row = {"id": w.id, "reason": w.reason, "expires": w.expires.isoformat()}
        if w.expired(today):
            status = "expired"
            expired.append(w.id)
        elif req is None:
            status = "not in this run"
        elif req["verdict"] == "fail":
            status = "applied"
            req["waived_verdict"] = req["verdict"]
            req["verdict"] = "waived"
            req["waiver"] = {"reason": w.reason, "expires": w.expires.isoformat()}
            req["reason"] = (
                f"waived until {w.expires.isoformat()}: {w.reason} (failed: {req['reason']})"
            )
        elif req["verdict"] == "pass":
            status = "passes now: remove the waiver"
        else:
            status = f"not applied: the verdict is {req['verdict']}" + (
                " (a harness error is never waived)" if req["verdict"] == "error" else ""
            )
        waiver_rows.append({**row, "status": status})
    verdicts = {r["id"]: r["verdict"] for r in requirements}
    gate: dict[str, Any] = {"waivers": waiver_rows, "expired_waivers": expired}
    if baseline is None:
        blocking = [rid for rid, v in verdicts.items() if v in ("fail", "error")]
    else:
        diff = compare(baseline.verdicts, verdicts)
        same = (
            None
            if baseline.catalogue_digest is None or catalogue_digest is None
            else baseline.catalogue_digest == catalogue_digest
        )
        both = len([rid for rid in verdicts if rid in baseline.verdicts])
        if same:
            note = f"same catalogue; compared on {both} requirements"
        else:
            why = (
                "another catalogue version"
                if same is False
                else "a report without a catalogue digest"
            )
            note = (
                f"the baseline comes from {why}: compared on the {both} requirements both "
                f"know ({len(diff['only_after'])} only in this run, {len(diff['only_before'])} "
                "only in the baseline)"
            )
        blocking = [rid for rid in diff["regressions"] if verdicts[rid] != "waived"]
        gate["baseline"] = {
            "file": baseline.path,
            "run_id": baseline.run_id,
            "same_catalogue": same,
            "note": note,
            **{
                k: diff[k] for k in ("regressions", "improvements", "known_failures", "only_before")
            },
            "new_requirements": diff["only_after"],
        }
    gate["blocking"] = blocking
    gate["passed"] = not blocking and not expired
    return gate


def gate_lines(gate: Mapping[str, Any]) -> list[str]:
    """The gate in a few terminal lines (the waivers, the baseline, the decision)."""
    lines = []
    for w in gate.get("waivers", []):
        if w["status"] == "expired":
            lines.append(
                f"  waiver {w['id']} expired on {w['expires']}: the run fails until it is "
                "renewed (a new expires) or removed"
            )
        elif w["status"].startswith("passes now"):
            lines.append(f"  waiver {w['id']}: the requirement passes now; remove the waiver")
    base = gate.get("baseline")
    if base:
        lines.append(f"  baseline {base['file']} (run {base['run_id']}): {base['note']}")
        for key, label in (("regressions", "regressions"), ("improvements", "improvements"),
                           ("known_failures", "known failures (in the baseline too)")):  # fmt: skip
            if base[key]:
                lines.append(f"    {label}: {', '.join(base[key])}")
    if gate["passed"]:
        lines.append("  gate: pass")
    else:
        why = []
        if gate["blocking"]:
            kind = "regression(s)" if base else "failing requirement(s)"
            why.append(f"{len(gate['blocking'])} {kind}: {', '.join(gate['blocking'][:20])}")
        if gate["expired_waivers"]:
            why.append(f"expired waiver(s): {', '.join(gate['expired_waivers'])}")
        lines.append(f"  gate: FAIL ({'; '.join(why)})")
    return lines
