"""The control plane's round trip: ``ivanti publish`` over HTTP until a subscriber has the event,
against the same publish made in-process (the typed operation handed to ``perform``), in the same
run, rounds interleaved.

One :class:`conformance.simulation.Simulation` serving Ivanti and its control plane run in a
background event loop; one paho-mqtt subscriber (the SUT's identity, QoS 1, mutual TLS 1.2) in
this process. Each sample: publish, then wait for the subscriber's on_message. Prints the median
of each path and last ``ratio=<control/direct> target=<=1.5``.

    python benchmarks/bench_control_plane.py [--count 300]
"""

from __future__ import annotations

import argparse
import http.client
import json
import ssl
import statistics
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from conformance.control import ControlPlane, control_token
from conformance.simulation import Simulation
from simulators.ivanti.operations import Publish
from simulators.loop import LoopThread


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=300)
    args = parser.parse_args()
    loop = LoopThread("bench")
    with tempfile.TemporaryDirectory() as tmp:
        pki_dir = Path(tmp)
        sim = Simulation(pki_dir)
        from conformance.ivanti.vendor import IvantiSettings

        loop.run(sim.start(["ivanti"], {"ivanti": IvantiSettings(events_per_s=0)}))
        token = control_token(pki_dir)
        control = ControlPlane(sim, token)
        loop.run(control.start())
        env = sim.environment()
        topic = loop.run(sim.perform("ivanti", Publish(event_type="device_check_in"))).topic
        got = threading.Event()
        subscribed = threading.Event()
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench", clean_session=False)
        client.username_pw_set(env["CONFORMANCE_IVANTI_USERNAME"])
        client.tls_set(ca_certs=env["CONFORMANCE_CA_FILE"],
                       certfile=env["CONFORMANCE_IVANTI_CLIENT_CERT"],
                       keyfile=env["CONFORMANCE_IVANTI_CLIENT_KEY"],
                       tls_version=ssl.PROTOCOL_TLSv1_2)  # fmt: skip
        client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        client.on_subscribe = lambda *a: subscribed.set()
        client.on_message = lambda c, u, m: got.set()
        client.connect(env["CONFORMANCE_IVANTI_BROKER_HOST"],
                       int(env["CONFORMANCE_IVANTI_BROKER_PORT"]))  # fmt: skip
        client.loop_start()
        assert subscribed.wait(10), "the subscriber did not subscribe"
        connection = http.client.HTTPConnection("127.0.0.1", control.port, timeout=30)
        body = json.dumps({"op": "publish", "event_type": "device_check_in"})
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

        def direct() -> None:
            loop.run(sim.perform("ivanti", Publish(event_type="device_check_in")))

        def over_http() -> None:
            connection.request("POST", "/vendors/ivanti/operations", body, headers)
            answer = connection.getresponse()
            assert answer.status == 200, answer.read()
            answer.read()

        samples: dict[str, list[float]] = {"direct": [], "control": []}
        for index in range(args.count * 2 + 20):
            name, publish = ("direct", direct) if index % 2 else ("control", over_http)
            got.clear()
            started = time.perf_counter()
            publish()
            assert got.wait(10), "the subscriber got nothing"
            if index >= 20:  # warm-up
                samples[name].append(time.perf_counter() - started)
        client.loop_stop()
        client.disconnect()
        loop.run(control.stop())
        loop.run(sim.stop())
    loop.stop()
    direct_ms = statistics.median(samples["direct"]) * 1000
    control_ms = statistics.median(samples["control"]) * 1000
    print(
        f"direct publish -> receipt: median {direct_ms:.2f} ms ({len(samples['direct'])} samples)"
    )
    print(f"control plane publish -> receipt: median {control_ms:.2f} ms")
    print(f"ratio={control_ms / direct_ms:.2f} target=<=1.5")


if __name__ == "__main__":
    main()
