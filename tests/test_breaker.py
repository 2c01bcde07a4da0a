"""The circuit breaker: every transition, driven by a fake clock (nothing sleeps)."""

import threading

from bmad.gateway.breaker import CircuitBreaker, State
from tests.support import FakeClock


def make(threshold=3, recovery=120.0):
    clock = FakeClock()
    changes = []
    breaker = CircuitBreaker("p1", failure_threshold=threshold, recovery_seconds=recovery, clock=clock,
                             on_change=lambda name, old, new: changes.append((name, old.value, new.value)))
    return breaker, clock, changes


def fail(breaker, times=1):
    for _ in range(times):
        breaker.record_failure(breaker.allow())


def test_starts_closed_and_lets_everything_through():
    breaker, _, changes = make()
    assert breaker.state is State.CLOSED
    permits = [breaker.allow() for _ in range(10)]
    assert all(p is not None and not p.trial for p in permits)
    assert changes == []


def test_opens_after_threshold_consecutive_failures():
    breaker, _, changes = make(threshold=3)
    fail(breaker, 2)
    assert breaker.state is State.CLOSED and breaker.consecutive_failures == 2
    fail(breaker)
    assert breaker.state is State.OPEN
    assert changes == [("p1", "closed", "open")]
    assert breaker.allow() is None
    assert not breaker.available()


def test_a_success_resets_the_count():
    breaker, _, _ = make(threshold=3)
    fail(breaker, 2)
    breaker.record_success(breaker.allow())
    fail(breaker, 2)
    assert breaker.state is State.CLOSED


def test_half_open_after_recovery_lets_exactly_one_trial_through():
    breaker, clock, changes = make(threshold=1, recovery=120.0)
    fail(breaker)
    clock.tick(119.9)
    assert breaker.allow() is None
    clock.tick(0.2)
    assert breaker.available()
    trial = breaker.allow()
    assert trial is not None and trial.trial
    assert breaker.state is State.HALF_OPEN
    assert [breaker.allow() for _ in range(5)] == [None] * 5  # everyone else skips
    assert not breaker.available()
    assert changes == [("p1", "closed", "open"), ("p1", "open", "half_open")]


def test_trial_success_closes():
    breaker, clock, changes = make(threshold=1)
    fail(breaker)
    clock.tick(120)
    breaker.record_success(breaker.allow())
    assert breaker.state is State.CLOSED
    assert changes[-1] == ("p1", "half_open", "closed")
    assert breaker.allow() is not None


def test_trial_failure_reopens_for_another_recovery_period():
    breaker, clock, changes = make(threshold=1, recovery=60.0)
    fail(breaker)
    clock.tick(60)
    breaker.record_failure(breaker.allow())
    assert breaker.state is State.OPEN
    assert changes[-1] == ("p1", "half_open", "open")
    clock.tick(59)
    assert breaker.allow() is None
    clock.tick(1)
    assert breaker.allow().trial


def test_results_from_before_a_transition_are_ignored():
    breaker, clock, _ = make(threshold=2)
    early = breaker.allow()  # let through while closed, finishes much later
    fail(breaker, 2)
    assert breaker.state is State.OPEN
    clock.tick(120)
    trial = breaker.allow()
    breaker.record_success(early)  # not the trial: must not close the circuit
    assert breaker.state is State.HALF_OPEN
    breaker.record_failure(early)
    assert breaker.state is State.HALF_OPEN
    breaker.record_success(trial)
    assert breaker.state is State.CLOSED


def test_failures_while_open_do_not_extend_it():
    breaker, clock, _ = make(threshold=1, recovery=10.0)
    permit = breaker.allow()
    other = breaker.allow()
    breaker.record_failure(permit)
    clock.tick(9)
    breaker.record_failure(other)
    clock.tick(1)
    assert breaker.allow().trial


def test_release_frees_the_trial_slot():
    breaker, clock, _ = make(threshold=1)
    fail(breaker)
    clock.tick(120)
    trial = breaker.allow()
    assert breaker.allow() is None
    breaker.release(trial)  # e.g. the request was refused for a reason that says nothing about the provider
    assert breaker.state is State.HALF_OPEN
    assert breaker.allow().trial


def test_a_lost_trial_does_not_pin_the_circuit_half_open():
    breaker, clock, _ = make(threshold=1, recovery=30.0)
    fail(breaker)
    clock.tick(30)
    assert breaker.allow().trial  # its caller never reports back
    clock.tick(29)
    assert breaker.allow() is None
    clock.tick(1)
    assert breaker.allow().trial


def test_listener_runs_outside_the_lock():
    breaker, _, _ = make(threshold=1)
    seen = []

    def listener(name, old, new):
        # would deadlock if the breaker still held its lock
        seen.append((breaker.state, breaker.available(), breaker.snapshot()["state"]))

    breaker.on_change = listener
    fail(breaker)
    assert seen == [(State.OPEN, False, "open")]


def test_concurrent_callers_get_one_trial_between_them():
    breaker, clock, _ = make(threshold=1)
    fail(breaker)
    clock.tick(120)
    got = []
    barrier = threading.Barrier(8)

    def grab():
        barrier.wait()
        got.append(breaker.allow())

    threads = [threading.Thread(target=grab) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(1 for p in got if p is not None) == 1


def test_state_levels_for_the_metric():
    assert [s.level for s in (State.CLOSED, State.HALF_OPEN, State.OPEN)] == [0, 1, 2]
    assert [s.value for s in State] == ["closed", "half_open", "open"]
