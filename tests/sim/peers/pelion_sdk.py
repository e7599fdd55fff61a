"""Drive the official Pelion Python SDK (``mbed-cloud-sdk`` 2.2.0) against a simulator.

Run with the SDK's own interpreter (``.peers/pelion-sdk-venv/bin/python``), never the
project's: ``python pelion_sdk.py`` with ``CONFORMANCE_PELION_API_URL``,
``CONFORMANCE_PELION_API_KEY``, ``CONFORMANCE_CA_FILE``, ``CONFORMANCE_SUT_CERT_FILE``,
``CONFORMANCE_SUT_KEY_FILE`` and ``PELION_DEVICE`` (a registered device with a text/plain
counter ``/3200/0/5501``, temperature ``/3303/0/5700`` and manufacturer ``/3/0/0``, which
change on their own) in the environment. Prints one JSON object of what it saw.

Long poll: subscribe (``PUT /v2/subscriptions/…``), receive a notification, read ``/3/0/0``
through a device request and its async response, stop (``DELETE /v2/notification/pull``).
Callback: serve HTTPS, ``update_webhook`` (``DELETE /v2/notification/pull``, ``PUT
/v2/notification/callback``, answered after our verification), receive a notification there,
``get_webhook``, ``delete_webhook``.
"""

from __future__ import annotations

import json
import os
import queue
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import certifi  # type: ignore[import-not-found, unused-ignore]

ENV = os.environ
# The SDK has no CA option: it hands certifi.where() to urllib3 when each API client is made.
certifi.where = lambda: ENV["CONFORMANCE_CA_FILE"]

from mbed_cloud import ConnectAPI  # type: ignore[import-not-found]  # noqa: E402

DEVICE = ENV["PELION_DEVICE"]
TIMEOUT_S = 20


def main() -> dict[str, Any]:
    seen: dict[str, Any] = {}
    api = ConnectAPI(
        {
            "api_key": ENV["CONFORMANCE_PELION_API_KEY"],
            "host": ENV["CONFORMANCE_PELION_API_URL"],
            "autostart_notification_thread": True,
        }
    )
    # Long poll.
    api.start_notifications()
    values = api.add_resource_subscription(DEVICE, "/3200/0/5501")
    seen["pull_notification"] = _text(values.get(timeout=TIMEOUT_S))
    seen["pull_read"] = api.get_resource_value(DEVICE, "/3/0/0", timeout=TIMEOUT_S)
    # A full queue would block the SDK's notification thread: unsubscribe before moving on.
    api.delete_resource_subscription(DEVICE, "/3200/0/5501")
    api.stop_notifications()

    # Callback.
    received: queue.Queue[bytes] = queue.Queue()

    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:  # http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            seen.setdefault("callback_headers", dict(self.headers))
            if body.strip() != b"{}":
                api.notify_webhook_received(body.decode())
                received.put(body)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(ENV["CONFORMANCE_SUT_CERT_FILE"], ENV["CONFORMANCE_SUT_KEY_FILE"])
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"https://127.0.0.1:{server.server_address[1]}/pelion"
    api.update_webhook(url, headers={"x-callback-secret": "sdk-secret"})
    seen["webhook_url"] = api.get_webhook().url
    temperatures = api.add_resource_subscription(DEVICE, "/3303/0/5700")
    seen["callback_notification"] = _text(temperatures.get(timeout=TIMEOUT_S))
    seen["callback_bodies"] = received.qsize()
    api.delete_resource_subscription(DEVICE, "/3303/0/5700")
    api.delete_webhook()
    server.shutdown()
    return seen


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


if __name__ == "__main__":
    print(json.dumps(main()), flush=True)
    sys.exit(0)
