"""Single-flight de-duplication: overlap is forced with Events and Barriers, never sleeps."""

import threading

import pytest

from bmad.gateway.dedup import SingleFlight
from bmad.errors import BadGateway, GatewayTimeout, HTTPError
from tests.support import poll


def run_concurrently(flight, n, key, fn):
    """Start ``n`` callers of ``flight.do(key, fn)``; returns (threads, outcomes) where outcomes fill as they end."""
    outcomes = [None] * n

    def call(i):
        try:
            outcomes[i] = ("ok",) + flight.do(key, fn)
        except Exception as e:
            outcomes[i] = ("error", e)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    return threads, outcomes


def wait_for_waiters(flight, key, n):
    """Block until ``n`` callers are waiting (they register under the lock before blocking)."""
    poll(lambda: flight.stats()["waiting"] >= n, timeout=10, interval=0.001)
    assert flight.stats()["waiting"] >= n, f"only {flight.stats()['waiting']} of {n} callers waited"


def test_ten_identical_calls_run_once():
    flight = SingleFlight(timeout=10)
    started = threading.Event()
    release = threading.Event()
    calls = []

    def upstream():
        calls.append(1)
        started.set()
        release.wait(10)
        return {"answer": 42}

    threads, outcomes = run_concurrently(flight, 10, "k", upstream)
    assert started.wait(10)
    wait_for_waiters(flight, "k", 9)
    assert flight.stats()["in_flight"] == 1
    release.set()
    for t in threads:
        t.join(10)
    assert len(calls) == 1
    assert all(o[0] == "ok" and o[1] == {"answer": 42} for o in outcomes)
    assert sorted(o[2] for o in outcomes) == [False] + [True] * 9
    results = [o[1] for o in outcomes]
    assert len({id(r) for r in results}) == 10  # every waiter has its own copy
    assert flight.stats() == {"coalesced": 9, "in_flight": 0, "waiting": 0, "leaders": 1, "timeouts": 0}


def test_a_failing_leader_propagates_its_error_to_all():
    flight = SingleFlight(timeout=10)
    started = threading.Event()
    release = threading.Event()
    calls = []

    def upstream():
        calls.append(1)
        started.set()
        release.wait(10)
        raise BadGateway("provider openai answered 500", type="provider_error")

    threads, outcomes = run_concurrently(flight, 10, "k", upstream)
    assert started.wait(10)
    wait_for_waiters(flight, "k", 9)
    release.set()
    for t in threads:
        t.join(10)
    assert len(calls) == 1
    assert all(o[0] == "error" for o in outcomes)
    errors = [o[1] for o in outcomes]
    assert all(isinstance(e, BadGateway) and e.status == 502 and e.type == "provider_error" for e in errors)
    assert all(e.message == "provider openai answered 500" for e in errors)


def test_different_keys_do_not_coalesce():
    flight = SingleFlight(timeout=10)
    assert flight.do("a", lambda: 1) == (1, False)
    assert flight.do("a", lambda: 2) == (2, False)  # the first flight is over: a new leader
    assert flight.do("b", lambda: 3) == (3, False)
    assert flight.stats()["coalesced"] == 0


def test_a_waiter_gives_up_after_the_timeout():
    flight = SingleFlight(timeout=0.01)
    started = threading.Event()
    release = threading.Event()

    def slow():
        started.set()
        release.wait(10)
        return b"late"

    threads, outcomes = run_concurrently(flight, 1, "k", slow)
    assert started.wait(10)
    with pytest.raises(GatewayTimeout) as caught:
        flight.do("k", lambda: b"never called")
    assert caught.value.status == 504 and "did not finish within 0.01 s" in caught.value.message
    release.set()
    threads[0].join(10)
    assert outcomes[0] == ("ok", b"late", False)
    assert flight.stats()["timeouts"] == 1


def test_a_leader_interrupted_by_base_exception_releases_waiters():
    flight = SingleFlight(timeout=10)
    started = threading.Event()
    release = threading.Event()

    class Stop(BaseException):
        pass

    def dies():
        started.set()
        release.wait(10)
        raise Stop()

    leader_error = []

    def lead():
        try:
            flight.do("k", dies)
        except Stop as e:
            leader_error.append(e)

    leader = threading.Thread(target=lead)
    leader.start()
    assert started.wait(10)
    threads, outcomes = run_concurrently(flight, 3, "k", dies)
    wait_for_waiters(flight, "k", 3)
    release.set()
    for t in threads + [leader]:
        t.join(10)
    assert leader_error
    assert all(o[0] == "error" and isinstance(o[1], HTTPError) and o[1].status == 500 for o in outcomes)


def test_coalesced_counter_is_incremented():
    class Counter:
        value = 0

        def inc(self):
            Counter.value += 1

    flight = SingleFlight(timeout=10, coalesced_counter=Counter())
    started = threading.Event()
    release = threading.Event()

    def upstream():
        started.set()
        release.wait(10)
        return b"x"

    threads, outcomes = run_concurrently(flight, 4, "k", upstream)
    assert started.wait(10)
    wait_for_waiters(flight, "k", 3)
    release.set()
    for t in threads:
        t.join(10)
    assert Counter.value == 3


def _call(cancel=None):
    from bmad.gateway.pipeline import Call
    from bmad.providers.base import ChatRequest

    call = Call(ChatRequest("m", [{"role": "user", "content": "hi"}], cancel=cancel), origin="workflow")
    call.state["cache_key"] = "same"
    return call


def test_a_call_that_may_be_cancelled_never_waits_on_another():
    from bmad.gateway.dedup import DedupPlugin
    from bmad.providers.cancel import CancelToken

    plugin = DedupPlugin(SingleFlight(timeout=5.0))
    leader = _call()
    assert plugin.pre(leader) is None and "flight" in leader.state
    step = _call(CancelToken())
    assert plugin.pre(step) is None and "flight" not in step.state  # its own call, at once, not a wait
    plugin.post(leader, "answer", None)
    lone = _call(CancelToken())
    assert plugin.pre(lone) is None and "flight" in lone.state  # with none in the air, it may lead
    plugin.post(lone, "answer", None)
    assert plugin.flights.stats()["in_flight"] == 0


def test_a_waiter_whose_leader_was_cancelled_makes_its_own_call():
    from bmad.gateway.dedup import DedupPlugin
    from bmad.providers.cancel import Cancelled, CancelToken

    plugin = DedupPlugin(SingleFlight(timeout=5.0))
    step = _call(CancelToken())
    assert plugin.pre(step) is None and "flight" in step.state
    answers = []
    waiter = threading.Thread(target=lambda: answers.append(plugin.pre(_call())))
    waiter.start()
    assert poll(lambda: plugin.flights.stats()["waiting"] == 1)
    plugin.post(step, None, Cancelled("the call was cancelled"))
    waiter.join(5.0)
    assert not waiter.is_alive() and answers == [None]
