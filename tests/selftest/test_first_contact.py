"""First contact: a setup mistake every check would repeat stops the run before the checks, with
one message naming the fix, exit status 4 and the report written. Real receivers on real
sockets: an aiohttp receiver whose certificate comes from a CA the run was not given, one
asked on a path it does not serve, one expecting another token, a Pelion callback on a wrong
path (a manifest); the right setup runs its checks as before."""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import trustme
from aiohttp import web

from simulators.pki import PKI
from tests.selftest.test_selftest import Outcome, run_suite

TOKEN = "their-secret"


@contextmanager
def receiver(tls: ssl.SSLContext) -> Iterator[int]:
    """An HTTPS receiver (presenting ``tls``) in a thread: POST /apple/notify and PUT
    /pelion/callback answer 200 to ``Bearer their-secret`` (or the header
    ``x-callback-secret: cb-secret``), 401 to anything else. Yields its port."""

    async def notify(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(
            status=200 if request.headers.get("Authorization") == f"Bearer {TOKEN}" else 401
        )

    async def callback(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(
            status=200 if request.headers.get("x-callback-secret") == "cb-secret" else 401
        )

    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_post("/apple/notify", notify)
    app.router.add_put("/pelion/callback", callback)
    runner = web.AppRunner(app, access_log=None)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
    loop.run_until_complete(site.start())
    port = int(runner.addresses[0][1])
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.run_until_complete(runner.cleanup())
        loop.close()


def _stopped(outcome: Outcome, *fix: str) -> str:
    """The run stopped at first contact: exit 4, one message naming ``fix``, the report."""
    assert outcome.code == 4, outcome.stdout[-3000:]
    error = str(outcome.report["startup_error"])
    assert error.startswith("conformance: first contact: "), error
    for words in fix:
        assert words in error, error
    assert {r["verdict"] for r in outcome.report["requirements"]} == {"error"}
    assert len(outcome.stdout.splitlines()) < 20, outcome.stdout  # not a hundred lines
    return error


def test_apple_receivers_by_url(tmp_path: Path) -> None:
    pki = PKI.load_or_create(tmp_path / "pki")
    with receiver(pki.server_context(pki.sut_server)) as port:
        url = f"https://127.0.0.1:{port}/apple/notify"
        wrong_path = run_suite(
            tmp_path / "path", f"--sut=https://127.0.0.1:{port}/notify", f"--sut-token={TOKEN}",
            f"--sut-ca={pki.ca}", f"--pki-dir={pki.folder}", target="conformance/apple",
        )  # fmt: skip
        _stopped(wrong_path, "answered 404", "--sut=URL", "webhook_url")
        wrong_token = run_suite(
            tmp_path / "token", f"--sut={url}", "--sut-token=another", f"--sut-ca={pki.ca}",
            f"--pki-dir={pki.folder}", target="conformance/apple",
        )  # fmt: skip
        error = _stopped(wrong_token, "answered 401", "--sut-token", "Bearer")
        assert "another" not in error  # the token is never printed
        right = run_suite(
            tmp_path / "right", f"--sut={url}", f"--sut-token={TOKEN}", f"--sut-ca={pki.ca}",
            f"--pki-dir={pki.folder}", "-k", "APL-AUTH-01", target="conformance/apple",
        )  # fmt: skip
        assert right.report["startup_error"] is None, right.stdout[-3000:]
        assert right.verdicts("pass") >= {"APL-AUTH-01"}, right.stdout[-3000:]


def test_a_certificate_from_a_ca_not_given(tmp_path: Path) -> None:
    other = trustme.CA()
    cert = other.issue_cert("127.0.0.1", "localhost")
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(tls)
    with receiver(tls) as port:
        outcome = run_suite(
            tmp_path, f"--sut=https://127.0.0.1:{port}/apple/notify", f"--sut-token={TOKEN}",
            target="conformance/apple",
        )  # fmt: skip
    _stopped(outcome, "does not verify", "--sut-ca=PEM", "sut-server.pem")


def test_a_manifest_with_a_wrong_callback_path(tmp_path: Path) -> None:
    pki = PKI.load_or_create(tmp_path / "pki")
    with receiver(pki.server_context(pki.sut_server)) as port:
        manifest = tmp_path / "sut.toml"
        manifest.write_text(
            'name = "a receiver on another path"\n[pelion]\nchannel = "callback"\n'
            f'callback_url = "https://127.0.0.1:{port}/callback"\n'
            'callback_headers = { x-callback-secret = "cb-secret" }\n'
        )
        outcome = run_suite(tmp_path, f"--sut={manifest}", target="conformance/pelion")
    _stopped(outcome, "answered 404", "callback_url in [pelion]")
