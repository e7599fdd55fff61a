"""Peak memory of the harness against a flooding SUT, against the 500 MB target.

    python benchmarks/bench_harness_flood.py

The SUT (written to a temporary folder, launched by the harness from a manifest) does its worst
at once: every notification is answered 200 with a 1 GiB body streamed as fast as it can; a
background task posts 8 MB bodies of tiny records to the observer, 4 at a time, for the whole
run; and it writes 5 MB/s of log lines. The harness process is `pytest conformance/apple` in a
subprocess; its peak resident memory (VmHWM) is read from /proc while it runs. The figure the
issue asks for: the harness stays under 500 MB against any SUT.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from conformance.ports import spare_port

ROOT = Path(__file__).resolve().parents[1]
TARGET_MB = 500.0

FLOODING_SUT = r"""
import asyncio, json, os, ssl, sys
from aiohttp import ClientSession, TCPConnector, web

PORT = int(sys.argv[1])
OBSERVER = os.environ["CONFORMANCE_OBSERVER_URL"]
RECORD = b'{"notification":{"notificationId":"x","notificationType":"ASSET_COUNT"}},'
BODY = b"[" + RECORD * (8_000_000 // len(RECORD) - 1) + RECORD[:-1] + b"]"

async def notify(request):
    await request.read()
    answer = web.StreamResponse(status=200)
    answer.content_length = 1 << 30
    await answer.prepare(request)
    chunk = b"x" * (1 << 20)
    for _ in range(1024):
        await answer.write(chunk)
    return answer

async def flood_observer():
    async with ClientSession() as session:
        async def one():
            while True:
                try:
                    async with session.post(f"{OBSERVER}/apple", data=BODY,
                                            headers={"Content-Type": "application/json"}) as r:
                        await r.read()
                except Exception:
                    await asyncio.sleep(0.1)
        await asyncio.gather(*(one() for _ in range(4)))

async def flood_log():
    line = "flood " * 100 + "\n"
    while True:
        sys.stdout.write(line * 5_000)
        sys.stdout.flush()
        await asyncio.sleep(0.1)

async def main():
    app = web.Application(client_max_size=64 << 20)
    app.router.add_post("/notify", notify)
    app.router.add_get("/healthz", lambda r: web.Response(text="ok"))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(os.environ["CONFORMANCE_SUT_CERT_FILE"], os.environ["CONFORMANCE_SUT_KEY_FILE"])
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", PORT, ssl_context=context).start()
    await asyncio.gather(flood_observer(), flood_log())

asyncio.run(main())
"""


def _peak_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        port = spare_port()
        (folder / "flood.py").write_text(FLOODING_SUT)
        manifest = folder / "sut.toml"
        manifest.write_text(
            f'name = "flooding-sut"\n[process]\ncommand = ["${{PYTHON}}", "flood.py", "{port}"]\n'
            f'ready = "https://127.0.0.1:{port}/healthz"\n'
            f'[apple]\nwebhook_url = "https://127.0.0.1:{port}/notify"\nauth_token = "t"\n'
        )
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "pytest", "conformance/apple", f"--sut={manifest}", "-q",
             "-p", "no:cacheprovider", f"--report-dir={folder / 'reports'}"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        peak_kb = 0
        stop = threading.Event()
        while proc.poll() is None:
            peak_kb = max(peak_kb, _peak_kb(proc.pid))
            stop.wait(0.2)
        out = proc.stdout.read() if proc.stdout else ""
        wall = time.perf_counter() - started
        reports = folder / "reports" / "latest"
        sizes = {p.name: p.stat().st_size for p in reports.glob("*.*")} if reports.is_dir() else {}
        log = next((folder / "reports").glob("*/sut.log"), None)
        log_mb = log.stat().st_size / 1e6 if log is not None else 0.0
    print(f"harness (pytest) peak resident memory: {peak_kb / 1024:.0f} MB")
    print(f"run wall time: {wall:.1f} s; exit status {proc.returncode}")
    print(f"report files: {sizes}")
    print(f"SUT log on disk: {log_mb:.1f} MB")
    print(out.strip().splitlines()[-1] if out.strip() else "")
    print(f"ratio={peak_kb / 1024 / TARGET_MB:.2f} target=<=1.0")


if __name__ == "__main__":
    main()
