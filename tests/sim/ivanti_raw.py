"""A raw MQTT client over a blocking TLS socket, for what no polite client sends: malformed and
truncated packets, garbage, silence. Packets it reads are decoded with the client-side codec."""

from __future__ import annotations

import contextlib
import socket
import ssl
from dataclasses import dataclass, field

from simulators.mqtt.codec import Decoder, MalformedPacket, encode
from simulators.mqtt.packets import Connect, Packet
from tests.sim.ivanti_peers import Target


@dataclass
class RawClient:
    target: Target
    sock: ssl.SSLSocket | None = None
    decoder: Decoder = field(default_factory=lambda: Decoder("client"))

    def open(self, timeout: float = 10.0) -> RawClient:
        context = self.target.context()
        raw = socket.create_connection((self.target.host, self.target.port), timeout=timeout)
        self.sock = context.wrap_socket(raw, server_hostname=self.target.host)
        return self

    def send(self, data: bytes | Packet) -> None:
        assert self.sock is not None
        self.sock.sendall(data if isinstance(data, bytes) else encode(data))

    def connect(self, **fields: object) -> Packet | None:
        self.send(Connect(self.target.client_id, **fields))  # type: ignore[arg-type]
        return self.read()

    def read(self, timeout: float = 10.0) -> Packet | None:
        """The next packet, or None when the broker closed the connection."""
        assert self.sock is not None
        self.sock.settimeout(timeout)
        while True:
            packet = self.decoder.next_packet()
            if packet is not None:
                return packet
            try:
                data = self.sock.recv(65536)
            except (ConnectionError, ssl.SSLError):
                return None
            if not data:
                return None
            self.decoder.receive_data(data)

    def closed_by_broker(self, timeout: float = 10.0) -> bool:
        """Whether the broker closes the connection within ``timeout`` (packets are skipped)."""
        try:
            while self.read(timeout) is not None:
                pass
        except (TimeoutError, MalformedPacket):
            return False
        return True

    def close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
            self.sock = None
