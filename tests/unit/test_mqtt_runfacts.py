"""simulators.mqtt.runfacts: run-wide tallies of a listener's connections, judged by IVT-CONN-*,
IVT-SESS-01 and IVT-PUB-01, kept for every connection and bounded whatever the client does."""

from __future__ import annotations

from simulators.mqtt.runfacts import PENDING_KEPT, RunFacts

T = "tenant"


def connected(facts: RunFacts, conn_id: int, client_id: str, *, clean: bool = False) -> None:
    facts.connect(conn_id, T, client_id, clean, None)
    facts.accepted(conn_id, T)


def test_concurrency_counts_others_live_at_each_connect() -> None:
    facts = RunFacts()
    for n in range(16):
        connected(facts, n, f"worker-{n}")
    facts.connect(99, T, "worker-0", False, None)  # a take-over: 15 others live
    got = facts.of(T)
    assert got.peak_live == 16 and got.accepted == 16
    assert got.connects_beside(15) == (2, "worker-15")  # the 16th, and the take-over
    assert got.connects_beside(16) == (0, None)
    assert (got.shared, got.first_shared) == (1, "worker-0")
    assert facts.of("another tenant").connects == 0


def test_a_take_over_resumes_and_a_new_client_id_abandons() -> None:
    facts = RunFacts()
    connected(facts, 1, "stable")
    facts.connect(2, T, "stable", False, None)
    facts.closed(1, T)  # taken over: the broker closes the older one after the CONNECT
    facts.accepted(2, T)
    assert (facts.of(T).resumed, facts.of(T).abandoned) == (1, 0)
    facts.closed(2, T)
    facts.closed(2, T)  # a second close changes nothing
    assert facts.of(T).abandoned == 0  # nobody connected since: not judged yet
    connected(facts, 3, "fresh", clean=True)
    got = facts.of(T)
    assert (got.abandoned, got.first_abandoned) == (1, "stable")
    assert (got.clean, got.first_clean, got.distinct_client_ids) == (1, "fresh", 2)
    facts.connect(4, T, "stable", False, None)  # back at last: resumed, not abandoned
    assert (facts.of(T).resumed, facts.of(T).abandoned) == (2, 0)


def test_a_refused_connect_opens_no_session_but_counts_as_an_attempt() -> None:
    facts = RunFacts()
    facts.connect(1, T, "refused", True, None)
    facts.closed(1, T)
    got = facts.of(T)
    assert (got.connects, got.accepted, got.clean, got.abandoned) == (1, 0, 0, 0)


def test_watched_publishes_and_wills() -> None:
    facts = RunFacts(watched=lambda tenant, topic: tenant == T and topic.startswith("event/"))
    facts.connect(1, T, "c", False, "event/x")
    facts.connect(2, "other", "c", False, "event/x")
    facts.published(T, "mine/receipts")
    facts.published(T, "event/y")
    got = facts.of(T)
    assert (got.publishes, got.watched_publishes, got.first_watched_topic) == (2, 1, "event/y")
    assert (got.watched_wills, got.first_watched_will) == (1, "event/x")


def test_churn_stays_bounded_and_settles_the_oldest_as_abandoned() -> None:
    facts = RunFacts()
    total = PENDING_KEPT + 50
    for n in range(total):
        connected(facts, n, f"once-{n}")
        facts.closed(n, T)
    got = facts.of(T)
    assert (got.accepted, got.abandoned, got.first_abandoned) == (total, total - 1, "once-0")
    assert len(got.client_ids) == 10 and len(got.crowding) == 1
