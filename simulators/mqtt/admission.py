"""What a broker core admits: a CONNECT (:meth:`Admission.connect`, or :class:`Refused` with its
CONNACK return code, MQTT-3.2.2-4, -5) and each topic filter of a SUBSCRIBE
(:meth:`Admission.subscription_problem`, return code 0x80 in the SUBACK otherwise). Decisions
only: the core carries them out."""

from __future__ import annotations

from dataclasses import dataclass

from simulators.mqtt.codec import SUPPORTED_PROTOCOLS
from simulators.mqtt.injected_faults import InjectedFaults
from simulators.mqtt.packets import (
    CONNACK_BAD_USER_NAME_OR_PASSWORD,
    CONNACK_IDENTIFIER_REJECTED,
    CONNACK_NOT_AUTHORIZED,
    CONNACK_SERVER_UNAVAILABLE,
    CONNACK_UNACCEPTABLE_PROTOCOL_VERSION,
    Connect,
)
from simulators.mqtt.policy import BrokerPolicy, Identity
from simulators.mqtt.sessions import Session, SessionTable
from simulators.mqtt.text import excerpt
from simulators.mqtt.topics import topic_filter_problem

__all__ = ["Admission", "Admitted", "Refused"]


class Refused(Exception):
    """A CONNECT the broker refuses: CONNACK ``return_code``, then close (MQTT-3.2.2-5)."""

    def __init__(self, return_code: int, reason: str) -> None:
        super().__init__(reason)
        self.return_code = return_code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Admitted:
    """An admitted CONNECT: whose, under which client id (assigned if it was empty), the
    session that client id already has, and the session to evict to make room."""

    tenant: str
    client_id: str
    session: Session | None
    evict: Session | None


class Admission:
    """The admission rules of one core: its policy, its sessions, the faults armed on it."""

    def __init__(
        self, policy: BrokerPolicy, sessions: SessionTable, faults: InjectedFaults
    ) -> None:
        self.policy = policy
        self._sessions = sessions
        self._faults = faults

    def connect(self, identity: Identity | None, connect: Connect, now: float) -> Admitted:
        """Decide on a CONNECT without changing a session, or raise :class:`Refused`. (An
        armed refusal is used up, an ended hold forgotten, an empty client id assigned.)"""
        policy, sessions, faults = self.policy, self._sessions, self._faults
        if (connect.protocol_name, connect.protocol_level) not in SUPPORTED_PROTOCOLS:
            raise Refused(
                CONNACK_UNACCEPTABLE_PROTOCOL_VERSION,
                f"protocol {excerpt(connect.protocol_name)!r} level {connect.protocol_level} is not MQTT 3.1.1 or 3.1 (MQTT-3.1.2-2)",
            )
        if identity is None:
            raise Refused(CONNACK_NOT_AUTHORIZED, "no client certificate identity")
        tenant = identity.tenant
        if refusal := faults.connect_refusal(tenant):
            raise Refused(*refusal)
        if connect.username is not None and connect.username != identity.email:
            raise Refused(
                CONNACK_BAD_USER_NAME_OR_PASSWORD,
                f"user name {excerpt(connect.username)!r} is not the certificate's {identity.email!r}",
            )
        client_id = connect.client_id
        if not client_id:
            if not connect.clean_session:
                raise Refused(
                    CONNACK_IDENTIFIER_REJECTED,
                    "empty client id with clean session 0 (MQTT-3.1.3-8)",
                )
            client_id = sessions.assign_client_id(tenant)  # MQTT-3.1.3-6
        if len(client_id) > policy.max_client_id_length:
            raise Refused(
                CONNACK_IDENTIFIER_REJECTED,
                f"client id longer than {policy.max_client_id_length} characters (MQTT-3.1.3-9)",
            )
        if refusal := faults.hold_refusal(tenant, client_id, now):
            raise Refused(*refusal)
        tenant_sessions = sessions.of_tenant(tenant)
        session = tenant_sessions.get(client_id)
        older = session.connection if session is not None else None
        if older is not None and policy.duplicate_client_id == "refuse":
            raise Refused(CONNACK_IDENTIFIER_REJECTED, "client id in use by a live connection")
        live = sessions.live(tenant) - (older is not None)
        if live >= policy.max_connections_per_tenant:
            raise Refused(
                CONNACK_SERVER_UNAVAILABLE,
                f"tenant {tenant!r} already has {live} connections (limit {policy.max_connections_per_tenant})",
            )
        evict = None
        replaces = session is not None and (connect.clean_session or session.clean_session)
        if session is None or replaces:
            remaining = len(tenant_sessions) - replaces
            if remaining >= policy.max_sessions_per_tenant:
                evict = min(
                    (
                        s
                        for s in tenant_sessions.values()
                        if s.connection is None and s is not session
                    ),
                    key=lambda s: s.disconnected_at,
                    default=None,
                )
                if evict is None:
                    raise Refused(
                        CONNACK_SERVER_UNAVAILABLE,
                        f"tenant {tenant!r} has {remaining} sessions, all connected",
                    )
        return Admitted(tenant, client_id, session, evict)

    def subscription_problem(
        self, identity: Identity, session: Session, topic_filter: str
    ) -> str | None:
        """Why ``session`` may not subscribe to ``topic_filter`` (None: it may): an invalid
        filter, too long, not allowed for ``identity``, or one subscription too many."""
        policy = self.policy
        problem = topic_filter_problem(topic_filter)
        if problem is None and len(topic_filter) > policy.max_topic_filter_length:
            problem = f"topic filter longer than {policy.max_topic_filter_length} characters"
        if problem is None and not policy.may_subscribe(identity, topic_filter):
            problem = "the client may not subscribe to this topic filter"
        if (
            problem is None
            and topic_filter not in session.subscriptions
            and len(session.subscriptions) >= policy.max_subscriptions_per_session
        ):
            problem = f"the session already has {len(session.subscriptions)} subscriptions"
        return problem
