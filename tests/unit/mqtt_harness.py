"""A test driver for :class:`simulators.mqtt.core.BrokerCore`: clients speak bytes through the
real codec, and every packet the broker sends is encoded and decoded by a client-side decoder,
so each test also checks that what the core sends is valid MQTT on the wire."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from simulators.mqtt.actions import Action, Close, ConnectionId, Notice, NoticeKind, Send
from simulators.mqtt.codec import Decoder, encode
from simulators.mqtt.core import BrokerCore
from simulators.mqtt.packets import Connect, Packet, Publish, Subscribe
from simulators.mqtt.policy import BrokerPolicy, Identity, allow_all

ALICE = Identity("tenant-a", "alice@a.example")
ANNE = Identity("tenant-a", "anne@a.example")
BOB = Identity("tenant-b", "bob@b.example")

# Clients may publish: for tests of forwarding, Wills and RETAIN handling.
OPEN_POLICY = BrokerPolicy(may_publish=allow_all)


class Harness:
    """One broker core, simulated time, and the client side of each connection."""

    def __init__(self, policy: BrokerPolicy | None = None, *, now: float = 1_000.0) -> None:
        self.core = BrokerCore(policy)
        self.now = now
        self._decoders: dict[ConnectionId, Decoder] = {}
        self.closed: set[ConnectionId] = set()

    def open(self, conn_id: ConnectionId, identity: Identity | None = ALICE) -> None:
        self.core.connection_made(conn_id, identity, self.now)
        self._decoders[conn_id] = Decoder("client")

    def send(self, conn_id: ConnectionId, *packets: Packet) -> list[Action]:
        return self.send_bytes(conn_id, b"".join(encode(p) for p in packets))

    def send_bytes(self, conn_id: ConnectionId, data: bytes) -> list[Action]:
        return self._checked(self.core.data_received(conn_id, data, self.now))

    def connect(
        self,
        conn_id: ConnectionId,
        client_id: str | None = None,
        identity: Identity | None = ALICE,
        **fields: Any,
    ) -> list[Action]:
        """Open ``conn_id`` and send CONNECT (client id defaults to the connection id)."""
        self.open(conn_id, identity)
        return self.send(
            conn_id, Connect(client_id if client_id is not None else str(conn_id), **fields)
        )

    def subscribe(
        self, conn_id: ConnectionId, *topic_filters: str, qos: int = 1, packet_id: int = 1
    ) -> list[Action]:
        return self.send(conn_id, Subscribe(packet_id, tuple((f, qos) for f in topic_filters)))

    def durable_subscriber(
        self, conn_id: ConnectionId, *topic_filters: str, identity: Identity = ALICE
    ) -> None:
        """Connect with clean session 0, subscribe at QoS 1, and go offline."""
        self.connect(conn_id, identity=identity, clean_session=False)
        self.subscribe(conn_id, *topic_filters)
        self.lose(conn_id)

    def lose(self, conn_id: ConnectionId) -> list[Action]:
        """The client's socket closes."""
        self.closed.add(conn_id)
        return self._checked(self.core.connection_lost(conn_id, self.now))

    def publish(
        self, topic: str, payload: bytes = b"{}", qos: int = 1, tenant: str | None = "tenant-a"
    ) -> list[Action]:
        return self._checked(self.core.publish(topic, payload, self.now, qos, tenant=tenant))

    def advance(self, seconds: float) -> list[Action]:
        self.now += seconds
        return self._checked(self.core.handle_timeout(self.now))

    def _checked(self, actions: list[Action]) -> list[Action]:
        for action in actions:
            if isinstance(action, Send):
                assert action.conn_id not in self.closed, f"{action} after Close"
                wire = encode(action.packet)
                assert self._decoders[action.conn_id].feed(wire) == [action.packet]
            elif isinstance(action, Close):
                self.closed.add(action.conn_id)
        return actions


def packets_to(conn_id: ConnectionId, actions: Iterable[Action]) -> list[Packet]:
    return [a.packet for a in actions if isinstance(a, Send) and a.conn_id == conn_id]


def publishes_to(conn_id: ConnectionId, actions: Iterable[Action]) -> list[Publish]:
    return [p for p in packets_to(conn_id, actions) if isinstance(p, Publish)]


def closed(actions: Iterable[Action]) -> list[ConnectionId]:
    return [a.conn_id for a in actions if isinstance(a, Close)]


def notices(kind: NoticeKind, actions: Iterable[Action]) -> list[Notice]:
    return [a for a in actions if isinstance(a, Notice) and a.kind is kind]
