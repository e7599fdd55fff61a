"""A SUT on another host reaches every simulator (``--listen``, ``--advertise``).

"Another host" is a network namespace this test makes, joined to ours by its own veth pair with
addresses from 198.18.0.0/15 (the benchmarking range, RFC 2544): traffic goes only between the
two namespaces, and both are removed after. The SUT inside knows the simulators by a host name
only its namespace resolves (``ip netns exec`` reads ``/etc/netns/<name>/hosts``), so every URL
it is handed and every certificate it verifies must carry that name.

Making a namespace needs root (or CAP_NET_ADMIN): elsewhere the test is skipped, and under
CI=true it fails, never skips.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

ROOT = Path(__file__).resolve().parents[2]
SIM_NAME = "simulators.conformance.test"  # resolvable inside the namespace only


@dataclass(frozen=True)
class Namespace:
    name: str
    host_address: str  # our end of the veth pair: the simulators listen here
    sut_address: str  # the namespace's end: the SUT listens here

    def run(self, *command: str) -> list[str]:
        """``command`` run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *command]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


@pytest.fixture
def namespace() -> Iterator[Namespace]:
    tag = f"{os.getpid() % 100_000}"
    subnet = 4 * (os.getpid() % 16_000)  # a /30 of 198.18.0.0/16 per process
    base = f"198.18.{subnet // 256}.{subnet % 256}"
    prefix, last = base.rsplit(".", 1)
    ns = Namespace(f"cf-{tag}", f"{prefix}.{int(last) + 1}", f"{prefix}.{int(last) + 2}")
    hosts = Path("/etc/netns") / ns.name / "hosts"
    try:
        _ip("netns", "add", ns.name)
    except (OSError, subprocess.CalledProcessError) as exc:
        why = getattr(exc, "stderr", None) or exc
        message = f"cannot make a network namespace here ({str(why).strip()}): needs root"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    try:
        _ip("link", "add", f"cfh{tag}", "type", "veth", "peer", "name", f"cfn{tag}")
        _ip("link", "set", f"cfn{tag}", "netns", ns.name)
        _ip("addr", "add", f"{ns.host_address}/30", "dev", f"cfh{tag}")
        _ip("link", "set", f"cfh{tag}", "up")
        _ip("netns", "exec", ns.name, "ip", "addr", "add", f"{ns.sut_address}/30", "dev", f"cfn{tag}")  # fmt: skip
        _ip("netns", "exec", ns.name, "ip", "link", "set", f"cfn{tag}", "up")
        _ip("netns", "exec", ns.name, "ip", "link", "set", "lo", "up")
        hosts.parent.mkdir(parents=True, exist_ok=True)
        hosts.write_text(f"127.0.0.1 localhost\n{ns.host_address} {SIM_NAME}\n")
        yield ns
    finally:
        subprocess.run(["ip", "link", "del", f"cfh{tag}"], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "del", ns.name], capture_output=True, timeout=30)
        shutil.rmtree(hosts.parent, ignore_errors=True)


def _toml(value: object) -> str:
    """A TOML value for the scalars, lists and string tables a manifest holds."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + " }"
    raise TypeError(value)


def _manifest_inside(ns: Namespace, folder: Path) -> Path:
    """The bundled reference SUT's manifest (every vendor), run inside the namespace: it
    listens on the namespace's address with a certificate for it, from a CA of its own."""
    import tomllib

    from conformance.reference import fixtures_dir
    from conformance.vendors import discover

    ca = trustme.CA()
    cert = ca.issue_cert(ns.sut_address)
    ca.cert_pem.write_to_path(str(folder / "sut-ca.pem"))
    cert.private_key_and_cert_chain_pem.write_to_path(str(folder / "sut.pem"))
    raw = tomllib.loads((fixtures_dir() / "reference_sut" / "sut.toml").read_text())
    process = raw["process"]
    for vendor in discover():
        part = tomllib.loads((fixtures_dir() / vendor / "reference.toml").read_text())
        process["command"] = [*process["command"], *part.pop("args", [])]
        process["env"] = {**process.get("env", {}), **part.pop("env", {})}
        raw[vendor] = part[vendor]
    process["command"] = ns.run(sys.executable, *process["command"][1:])
    process["env"] = {
        **process["env"],
        "REFERENCE_SUT_HOST": ns.sut_address,
        "CONFORMANCE_SUT_CERT_FILE": str(folder / "sut.pem"),
        "CONFORMANCE_SUT_KEY_FILE": str(folder / "sut.pem"),
    }
    lines = [f"name = {_toml('reference-sut-elsewhere')}"]
    for table, body in raw.items():
        if not isinstance(body, dict):
            continue
        lines.append(f"[{table}]")
        if table in discover() and any(k.endswith("_url") for k in body):
            body["tls_ca"] = str(folder / "sut-ca.pem")
        for key, value in body.items():
            if isinstance(value, str):
                value = value.replace("127.0.0.1", ns.sut_address)
            lines.append(f"{key} = {_toml(value)}")
    path = folder / "sut.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.external_tool("ip")
def test_the_reference_sut_in_another_namespace_passes(
    namespace: Namespace, tmp_path: Path
) -> None:
    """Every simulator, the observer and the SUT's own endpoints across the veth pair: the
    reference SUT (Apple receiver and API client, Pelion callback and WebSocket, Ivanti
    subscriber) passes the whole suite, reaching the simulators by name."""
    manifest = _manifest_inside(namespace, tmp_path)
    reports = tmp_path / "reports"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "conformance", f"--sut={manifest}",
         f"--report-dir={reports}", f"--listen={namespace.host_address}",
         f"--advertise={SIM_NAME}", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    report = json.loads((reports / "latest" / "report.json").read_text())
    verdicts = {r["id"]: r["verdict"] for r in report["requirements"]}
    bad = {i: v for i, v in verdicts.items() if v in ("fail", "error")}
    assert run.returncode == 0 and not bad, (bad, run.stdout[-3000:])
    log = (reports / report["run_id"] / "sut.log").read_text(errors="replace")
    assert f"reference SUT on https://{namespace.sut_address}" in log
    passed = [i for i, v in verdicts.items() if v == "pass"]
    assert len(passed) >= 60, verdicts  # judged, not only not failed


@pytest.mark.external_tool("ip", "mosquitto_sub", "curl")
def test_mosquitto_sub_in_another_namespace_gets_events_from_serve(
    namespace: Namespace, tmp_path: Path
) -> None:
    """``conformance-sim serve ivanti --listen --advertise``: a third-party subscriber inside
    the namespace, configured from the printed environment alone, verifies the broker's
    certificate for the advertised name and receives the broker's own events; ``ctl`` there
    drives the control plane by the same name."""
    env_file = tmp_path / "sim.env"
    serve = subprocess.Popen(
        [sys.executable, "-m", "conformance.cli", "serve", "ivanti",
         f"--pki-dir={tmp_path / 'pki'}", f"--listen={namespace.host_address}",
         f"--advertise={SIM_NAME}", "--ivanti-events-per-s=5", f"--env-file={env_file}", "-q"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        ready = threading.Event()
        for _ in range(300):
            if env_file.is_file() or serve.poll() is not None:
                break
            ready.wait(0.1)
        assert env_file.is_file(), serve.stderr.read() if serve.stderr else "no env file"
        env = {}
        for line in env_file.read_text().splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            env[key] = shlex.split(value)[0]
        assert env["CONFORMANCE_IVANTI_BROKER_HOST"] == SIM_NAME
        assert env["CONFORMANCE_OBSERVER_URL"].startswith(f"http://{SIM_NAME}:")
        assert env["CONFORMANCE_CONTROL_URL"].startswith(f"http://{SIM_NAME}:")
        ctl = subprocess.run(
            namespace.run(sys.executable, "-m", "conformance.cli", "ctl", "--env-file",
                          str(env_file), "clock", "advance", "90s"),
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert ctl.returncode == 0, ctl.stderr  # the control plane, across the veth pair
        tls = ["--cacert", env["CONFORMANCE_CA_FILE"], "--cert",
               env["CONFORMANCE_IVANTI_CLIENT_CERT"], "--key", env["CONFORMANCE_IVANTI_CLIENT_KEY"]]  # fmt: skip
        metadata = subprocess.run(
            namespace.run("curl", "-sS", *tls, env["CONFORMANCE_IVANTI_CPS_URL"] + "/event/$metadata"),
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert metadata.returncode == 0, metadata.stderr
        topics = [arg for t in json.loads(metadata.stdout)["topics"].values() for arg in ("-t", t)]
        sub = subprocess.run(
            namespace.run(
                "mosquitto_sub", "-h", SIM_NAME, "-p", env["CONFORMANCE_IVANTI_BROKER_PORT"],
                "--cafile", env["CONFORMANCE_CA_FILE"],
                "--cert", env["CONFORMANCE_IVANTI_CLIENT_CERT"],
                "--key", env["CONFORMANCE_IVANTI_CLIENT_KEY"],
                "-u", env["CONFORMANCE_IVANTI_USERNAME"], "--tls-version", "tlsv1.2",
                "-i", "elsewhere-1", "-q", "1", *topics, "-C", "2", "-W", "30", "-v",
            ),
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert sub.returncode == 0, (sub.returncode, sub.stderr)
        assert len(sub.stdout.splitlines()) == 2, sub.stdout
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=30)
