"""The README's CI templates work as written: their shell steps are run here, in order, in a
fresh project, against the reference SUT and a broken one (the Apple receiver, the quickest
suite). Only the install step is left out (the suite is installed already); what it hands
the next steps (``CONFORMANCE_HOME``) is given instead. So the documentation cannot rot."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from conformance.ports import spare_port

ROOT = Path(__file__).resolve().parents[2]
FLAW = "rejects-refunds"  # fails exactly APL-TYPE-02 (fixtures/apple/flaws.py)


def _templates() -> dict[str, Any]:
    """The README's two YAML blocks: GitHub Actions (``jobs``) and GitLab CI (``script``)."""
    blocks = re.findall(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    found: dict[str, Any] = {}
    for block in blocks:
        doc = yaml.safe_load(block)
        if isinstance(doc, dict) and "jobs" in doc:
            found["github"] = doc
        elif isinstance(doc, dict) and "script" in doc.get("conformance", {}):
            found["gitlab"] = doc
    assert set(found) == {"github", "gitlab"}, "the README lost a CI template"
    return found


def _project(folder: Path, flaw: str | None, waive: bool = False) -> Path:
    """A user's repository: conformance/sut.toml (the reference SUT's Apple receiver, with
    ``flaw``), conformance/waivers.toml (waiving APL-TYPE-02 when ``waive``)."""
    manifest = (ROOT / "fixtures" / "apple" / "broken" / f"{FLAW}.toml").read_text()
    if flaw is None:
        manifest = manifest.replace(f', "--flaw", "{FLAW}"', "")
    (folder / "conformance").mkdir(parents=True, exist_ok=True)
    (folder / "conformance" / "sut.toml").write_text(manifest)
    waiver = (
        '[[waiver]]\nid = "APL-TYPE-02"\nreason = "refunds ship next sprint (T-1)"\n'
        "expires = 2099-12-31\n"
    )
    (folder / "conformance" / "waivers.toml").write_text(waiver if waive else "")
    return folder


def _environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "CI_"))}
    return {**env, "REFERENCE_SUT_PORT": str(spare_port()), **extra}


def _run_github(doc: dict[str, Any], project: Path, tmp: Path) -> tuple[int, Path, str]:
    """Every ``run`` step of the GitHub job, as Actions runs it (``bash -e``, the job's
    ``env``, ``$GITHUB_ENV`` read between steps); the last status, the summary file and the
    last step's output."""
    steps = doc["jobs"]["conformance"]["steps"]
    summary, github_env = tmp / "step-summary.markdown", tmp / "github-env"
    github_env.write_text("")
    env = _environment(
        **doc.get("env", {}), GITHUB_WORKSPACE=str(project), RUNNER_TEMP=str(tmp),
        GITHUB_ENV=str(github_env), GITHUB_STEP_SUMMARY=str(summary),
    )  # fmt: skip
    status, output = 0, ""
    for step in steps:
        if "run" not in step:
            continue
        if step.get("name", "").startswith("Install"):
            assert "pip install" in step["run"] and "CONFORMANCE_HOME=" in step["run"]
            env["CONFORMANCE_HOME"] = str(ROOT)
            continue
        done = subprocess.run(
            ["bash", "-e", "-c", step["run"]], cwd=project, env=env,
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        status, output = done.returncode, (done.stdout + done.stderr)[-3000:]
        for line in github_env.read_text().splitlines():
            key, _, value = line.partition("=")
            env[key] = value
        if status:
            break
    return status, summary, output


def _run_gitlab(doc: dict[str, Any], project: Path) -> tuple[int, str]:
    """The GitLab job's ``script`` lines in one shell (``set -e``), with its ``variables``;
    its ``before_script`` installs the suite."""
    job = doc["conformance"]
    lines = job["script"]
    assert any("pip install" in line for line in job["before_script"])
    assert any("CONFORMANCE_HOME=" in line for line in job["before_script"])
    env = _environment(
        **job.get("variables", {}), CI_PROJECT_DIR=str(project), CONFORMANCE_HOME=str(ROOT)
    )
    done = subprocess.run(
        ["bash", "-c", "set -e\n" + "\n".join(lines)], cwd=project, env=env,
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    return done.returncode, (done.stdout + done.stderr)[-3000:]


def _report(project: Path, output: str) -> dict[str, Any]:
    report = project / "reports/latest/report.json"
    assert report.is_file(), output
    data: dict[str, Any] = json.loads(report.read_text())
    return data


def _verdict(report: dict[str, Any], rid: str) -> str:
    return str(next(r["verdict"] for r in report["requirements"] if r["id"] == rid))


@pytest.fixture(scope="module")
def templates() -> dict[str, Any]:
    return _templates()


def test_the_github_template_passes_the_reference_and_fails_a_regression(
    templates: dict[str, Any], tmp_path: Path
) -> None:
    project = _project(tmp_path / "repo", flaw=None)
    status, summary, output = _run_github(templates["github"], project, tmp_path)
    report = _report(project, output)
    assert status == 0, report["summary"]
    assert report["gate"]["passed"] and (project / "reports/latest/ctrf.json").is_file()
    assert "APL-TYPE-02" in summary.read_text()  # the requirement matrix, on the job page
    # The main branch's report becomes the baseline; the SUT then breaks APL-TYPE-02.
    (project / "conformance" / "baseline.json").write_text(json.dumps(report))
    _project(project, flaw=FLAW)
    status, _, output = _run_github(templates["github"], project, tmp_path)
    report = _report(project, output)
    assert status != 0 and _verdict(report, "APL-TYPE-02") == "fail"
    assert report["gate"]["baseline"]["regressions"] == ["APL-TYPE-02"]


def test_the_gitlab_template_lets_a_waived_failure_through(
    templates: dict[str, Any], tmp_path: Path
) -> None:
    project = _project(tmp_path / "repo", flaw=FLAW, waive=True)
    status, output = _run_gitlab(templates["gitlab"], project)
    report = _report(project, output)
    assert status == 0, report["summary"]
    assert _verdict(report, "APL-TYPE-02") == "waived"
    assert (project / "reports" / "summary.markdown").read_text().strip()
    assert (project / "reports/latest/junit.xml").is_file()  # the job's junit report
