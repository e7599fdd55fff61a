"""``conformance-sim serve VENDOR [VENDOR …]``: the vendor simulators, standalone
(docs/sut-contract.md §6).

For daily development and interoperability tests: it writes or reuses the PKI folder, starts
the observer and the named vendors' simulators on 127.0.0.1 or ``--listen`` (ports pinned with ``--port NAME=N``
or each vendor's ``--<vendor>-…-port`` option, else chosen free), prints the environment a SUT
needs as shell-sourceable ``export CONFORMANCE_…=…`` lines on standard output (and to
``--env-file``), logs what happens on standard error, and stops cleanly on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import signal
import sys
from pathlib import Path
from typing import Any

from conformance.options import ADVERTISE_HELP, LISTEN_HELP, MAX_PORT
from conformance.vendors import discover
from simulators.network import Reach

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    vendors = discover()
    parser = argparse.ArgumentParser(
        prog="conformance-sim", description="Vendor notification simulators, standalone."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="start simulators and print the environment a SUT needs",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    serve.add_argument(
        "vendors",
        nargs="+",
        metavar="VENDOR",
        choices=list(vendors),
        help=f"one or more of: {', '.join(vendors)}",
    )
    serve.add_argument(
        "--pki-dir",
        default="reports/pki",
        metavar="DIR",
        help="the CA and certificates, written once and reused (default: "
        "reports/pki, the same folder pytest conformance uses)",
    )
    serve.add_argument(
        "--port",
        action="append",
        default=[],
        metavar="NAME=PORT",
        help="pin a port: observer=PORT, or NAME=PORT for a vendor option "
        "--NAME-port (the --*-port options below)",
    )
    serve.add_argument("--observer-port", type=int, default=0, help="pin the observer's port")
    serve.add_argument("--listen", metavar="ADDR", help=LISTEN_HELP)
    serve.add_argument("--advertise", metavar="HOST", help=ADVERTISE_HELP)
    serve.add_argument("--control-port", type=int, default=0, help="pin the control plane's port")
    serve.add_argument(
        "--env-file",
        metavar="FILE",
        help="also write the export lines to FILE (source it from a shell)",
    )
    serve.add_argument("-q", "--quiet", action="store_true", help="log only errors")  # fmt: skip
    for plugin in vendors.values():
        plugin.add_options(serve.add_argument)
    _ctl_parser(commands, vendors)
    return parser


def _ctl_parser(commands: Any, vendors: dict[str, Any]) -> None:
    """``conformance-sim ctl …``: the control plane's verbs (docs/sut-contract.md §6)."""
    ctl = commands.add_parser(
        "ctl",
        help="drive running simulators through their control plane",
        description="Drive a running `conformance-sim serve` through its control plane. Reads "
        "CONFORMANCE_CONTROL_URL and CONFORMANCE_CONTROL_TOKEN from the environment or "
        "--env-file; prints what the simulator did as JSON.",
    )
    ctl.add_argument("--env-file", metavar="FILE", help="read the variables from this file "
                     "(the export lines serve prints)")  # fmt: skip
    ctl.add_argument("--timeout", type=float, default=120.0, metavar="S",
                     help="seconds to wait for an answer (default 120)")  # fmt: skip
    verbs = ctl.add_subparsers(dest="verb", required=True, metavar="VERB")
    clock = verbs.add_parser("clock", help="simulated time: `clock advance 5m`, `clock now`")
    clock_verbs = clock.add_subparsers(dest="clock_verb", required=True)
    advance = clock_verbs.add_parser("advance", help="advance simulated time")
    advance.add_argument("duration", metavar="DURATION", help="e.g. 90s, 5m, 3h, 24h")
    advance.set_defaults(request=lambda a: ("POST", "/clock/advance",
                                            {"seconds": duration_s(a.duration)}))  # fmt: skip
    now = clock_verbs.add_parser("now", help="simulated and real time now")
    now.set_defaults(request=lambda a: ("GET", "/clock", None))
    reset = verbs.add_parser("reset", help="disarm what earlier operations armed")
    reset.set_defaults(request=lambda a: ("POST", "/reset", {}))
    log = verbs.add_parser("log", help="the evidence as JSON lines")
    log.add_argument("--follow", action="store_true", help="keep printing new events")
    log.add_argument("--since", type=int, default=0, metavar="SEQ", help="from this event on")
    log.set_defaults(request=lambda a: (
        "GET", f"/log?since={a.since}" + ("&follow=1" if a.follow else ""), None))  # fmt: skip
    fault = verbs.add_parser("fault", help="arm a fault: `fault VENDOR KIND [--times N]`")
    fault.add_argument("vendor", metavar="VENDOR", choices=list(vendors))
    fault.add_argument("kind", metavar="KIND", help="e.g. status, timeout, drop-before-ack")
    fault.add_argument("--times", type=int, default=1, metavar="N")
    for flag, kind in (("--status", int), ("--seconds", float), ("--client-id", str)):
        fault.add_argument(flag, type=kind, help="where the vendor's fault takes it")
    fault.set_defaults(request=lambda a: (
        "POST", f"/vendors/{a.vendor}/operations",
        {"op": "fault", "kind": a.kind, "times": a.times,
         **{k: v for k, v in (("status", a.status), ("seconds", a.seconds),
                              ("client_id", a.client_id)) if v is not None}},
    ))  # fmt: skip
    do = verbs.add_parser("do", help="any operation: `do VENDOR '{\"op\": …}'`")
    do.add_argument("vendor", metavar="VENDOR", choices=list(vendors))
    do.add_argument("operation", metavar="JSON", help="the operation as a JSON object")
    do.set_defaults(request=lambda a: (
        "POST", f"/vendors/{a.vendor}/operations", _json_argument(a.operation)))  # fmt: skip
    for name, plugin in vendors.items():
        vendor = verbs.add_parser(name, help=f"{plugin.title}: its verbs")
        vendor_verbs = vendor.add_subparsers(dest="vendor_verb", required=True, metavar="VERB")
        plugin.add_ctl_verbs(vendor_verbs)
        vendor.set_defaults(request=lambda a, name=name: (
            "POST", f"/vendors/{name}/operations", a.operation(a)))  # fmt: skip


UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def duration_s(text: str) -> float:
    """``90s``, ``5m``, ``3h``, ``24h``, ``1.5d`` (or plain seconds) in seconds."""
    number, unit = (text[:-1], text[-1]) if text[-1:] in UNITS else (text, "s")
    try:
        seconds = float(number) * UNITS[unit]
    except ValueError:
        raise ValueError(f"{text!r} is not a duration: write e.g. 90s, 5m, 3h or 24h") from None
    if not seconds > 0:
        raise ValueError(f"{text!r}: a duration must be positive")
    return seconds


def _json_argument(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ValueError(
            f'the operation is not JSON ({exc}): write e.g. \'{{"op": "reset"}}\''
        ) from None


def _apply_ports(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    for item in args.port:
        name, sep, value = item.partition("=")
        if not sep or not value.isdigit() or not 0 < int(value) <= MAX_PORT:
            parser.error(f"--port {item}: write NAME=PORT with a port from 1 to {MAX_PORT}")
        attr = f"{name.replace('-', '_')}_port"
        if not hasattr(args, attr):
            names = sorted(
                a.removesuffix("_port").replace("_", "-") for a in vars(args) if a.endswith("_port")
            )
            parser.error(f"--port {item}: no option --{name}-port (names: {', '.join(names)})")
        setattr(args, attr, int(value))


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "ctl":
        return _ctl(args)
    _apply_ports(args, parser)
    pki_dir = Path(args.pki_dir).resolve()
    try:
        reach = Reach.of(args.listen, args.advertise)
    except ValueError as exc:
        parser.error(str(exc))
    vendors = list(dict.fromkeys(args.vendors))

    def option(flag: str) -> Any:
        return getattr(args, flag.lstrip("-").replace("-", "_"))

    settings = {}
    for name in vendors:
        try:
            settings[name] = discover()[name].settings(option, pki_dir=pki_dir)
        except ValueError as exc:
            parser.error(str(exc))
    try:
        return asyncio.run(_serve(vendors, settings, pki_dir, reach, args))
    except OSError as exc:
        print(f"conformance-sim: could not start: {exc} (is a pinned port busy?)", file=sys.stderr)
        return 4


async def _serve(
    vendors: list[str],
    settings: dict[str, Any],
    pki_dir: Path,
    reach: Reach,
    args: argparse.Namespace,
) -> int:
    from conformance.control import ControlPlane, control_token
    from conformance.simulation import Simulation
    from simulators.evidence import EvidenceEvent

    def log(event: EvidenceEvent) -> None:
        if not args.quiet or event.kind in ("error", "fault"):
            arrow = event.actor if event.direction == "--" else f"{event.actor} -> {event.peer}"
            print(f"[{event.real_s:9.3f}s sim {event.sim_s:9.1f}s] {arrow}: {event.summary}",
                  file=sys.stderr, flush=True)  # fmt: skip

    # The control plane binds where the other simulators do, and is advertised the same way.
    simulation = Simulation(pki_dir, reach=reach, observer_port=args.observer_port, sink=log)
    control = ControlPlane(simulation, control_token(pki_dir), reach=reach, port=args.control_port)
    try:
        await simulation.start(vendors, settings)
        await control.start()
        env = simulation.environment()
        env["CONFORMANCE_CONTROL_URL"] = control.base_url
        env["CONFORMANCE_CONTROL_TOKEN"] = control_token(pki_dir)
        lines = [f"export {key}={shlex.quote(value)}" for key, value in env.items()]
        print("\n".join(lines), flush=True)
        if args.env_file:
            await asyncio.to_thread(_write_atomically, Path(args.env_file), "\n".join(lines) + "\n")
        print(f"conformance-sim: serving {', '.join(vendors)}; Ctrl-C or SIGTERM stops",
              file=sys.stderr, flush=True)  # fmt: skip
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await control.stop()
        await simulation.stop()
    errors = simulation.errors()
    for error in errors:
        print(f"conformance-sim: simulator error: {error}", file=sys.stderr)
    print("conformance-sim: stopped", file=sys.stderr, flush=True)
    return 1 if errors else 0


def _ctl(args: argparse.Namespace) -> int:
    """Send one request to the control plane; print its answer (JSON) or one clear message."""
    import os
    import urllib.error
    import urllib.request

    def refuse(message: str, code: int = 1) -> int:
        print(f"conformance-sim ctl: {message}", file=sys.stderr)
        return code

    try:
        method, path, body = args.request(args)
    except ValueError as exc:
        return refuse(str(exc), 2)
    env = dict(os.environ)
    if args.env_file:
        try:
            env.update(_read_env_file(Path(args.env_file)))
        except OSError as exc:
            return refuse(f"--env-file {args.env_file}: {exc}", 2)
    url, token = env.get("CONFORMANCE_CONTROL_URL"), env.get("CONFORMANCE_CONTROL_TOKEN")
    if not url or not token:
        return refuse("CONFORMANCE_CONTROL_URL and CONFORMANCE_CONTROL_TOKEN are not set: "
                      "source the lines `conformance-sim serve` prints, or give --env-file", 2)  # fmt: skip
    request = urllib.request.Request(
        url.rstrip("/") + path,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as answer:
            if answer.headers.get_content_type() == "application/x-ndjson":
                for line in answer:
                    sys.stdout.write(line.decode())
                    sys.stdout.flush()
                return 0
            print(json.dumps(json.loads(answer.read()), indent=2))
            return 0
    except urllib.error.HTTPError as refused:
        try:
            message = json.loads(refused.read())["error"]
        except (ValueError, KeyError, TypeError):
            message = refused.reason
        return refuse(f"refused ({refused.code}): {message}")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return refuse(f"cannot reach the control plane at {url}: {reason}", 3)
    except KeyboardInterrupt:
        return 130


def _read_env_file(path: Path) -> dict[str, str]:
    """The ``export NAME=value`` lines serve writes (shell-quoted values)."""
    env = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.removeprefix("export ").partition("=")
        if sep and key.startswith("CONFORMANCE_"):
            env[key.strip()] = (shlex.split(value) or [""])[0]
    return env


def _write_atomically(path: Path, text: str) -> None:
    """Whoever waits for the file never reads half of it."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    partial.replace(path)


if __name__ == "__main__":
    sys.exit(main())
