"""The hard deadline every send runs under: it cuts a connection that outlives it, leaves one
that ended in time alone, and one thread of the process keeps every deadline (also in a child
forked as Celery's pool forks its workers)."""

import os
import socket
import threading
import time

import pytest

from invoicegen.core.outbox import Deadline, DeadlineExceeded, _Watch


def watch_threads() -> set[threading.Thread]:
    return {thread for thread in threading.enumerate() if thread.name == "deadlines"}


def cut(seconds: float, *, held: float) -> tuple[bool, bytes]:
    """(expired, what a read got) for a read held `held` seconds by a silent peer."""
    ours, theirs = socket.socketpair()
    try:
        with Deadline(seconds) as deadline:
            deadline.guard(ours)
            ours.settimeout(held)
            try:
                got = ours.recv(1)
            except TimeoutError:
                got = b"timeout"
        return deadline.expired, got
    finally:
        ours.close()
        theirs.close()


def test_a_call_that_outlives_its_deadline_is_cut_at_once():
    started = time.monotonic()

    expired, got = cut(0.2, held=5)

    assert (expired, got) == (True, b"")  # the shutdown ended the read
    assert time.monotonic() - started < 2


def test_a_call_that_ends_in_time_is_left_alone():
    ours, theirs = socket.socketpair()
    with Deadline(0.2) as deadline:
        deadline.guard(ours)
    time.sleep(0.4)

    assert not deadline.expired
    theirs.sendall(b"x")
    assert ours.recv(1) == b"x"  # not shut down after the call
    ours.close()
    theirs.close()


def test_deadlines_at_once_share_one_thread_and_each_keeps_its_own_time():
    results = {}

    def call(seconds):
        results[seconds] = cut(seconds, held=3)[0]

    callers = [threading.Thread(target=call, args=(s,)) for s in (0.1, 0.3, 0.2, 10)]
    before = watch_threads()  # the process's, if an earlier test started it; or none yet
    for caller in callers:
        caller.start()
    time.sleep(0.5)
    assert len(watch_threads() - before) <= 1
    assert len(watch_threads()) >= 1
    for caller in callers:
        caller.join()

    assert results == {0.1: True, 0.2: True, 0.3: True, 10: False}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_keeps_deadlines_of_its_own_and_never_the_parents():
    """The child starts afresh: were it to keep the parent's pending deadlines, its thread
    would shut down the connections it shares with the parent when their time came."""
    ours, theirs = socket.socketpair()
    with Deadline(0.4) as deadline:
        deadline.guard(ours)
        pid = os.fork()
        if pid == 0:  # the child: exit 0 if its own deadline cut its call
            try:
                own = cut(0.1, held=5) == (True, b"")
                time.sleep(0.6)  # past the parent's deadline
                os._exit(0 if own else 1)
            except BaseException:
                os._exit(2)
    _, status = os.waitpid(pid, 0)  # the parent's call ended in time; the child lived on

    assert os.waitstatus_to_exitcode(status) == 0
    assert not deadline.expired
    theirs.sendall(b"x")
    assert ours.recv(1) == b"x"  # the shared connection was not shut down by the child
    ours.close()
    theirs.close()


def test_a_deadline_that_fails_to_cut_leaves_the_others_running():
    class Broken(Deadline):
        def expire(self):
            raise RuntimeError("broken")

    with Broken(0.05):  # fails while the other waits: no new deadline wakes the thread again
        assert cut(0.3, held=3) == (True, b"")


def test_a_connection_made_after_the_deadline_is_refused_at_once():
    """A connect that outlived the deadline (nothing to cut yet) ends as it completes."""
    ours, theirs = socket.socketpair()
    with Deadline(0.05) as deadline:
        deadline.guard(None)
        time.sleep(0.2)
        deadline.guard(None)  # still nothing connected: nothing to refuse
        with pytest.raises(DeadlineExceeded):
            deadline.guard(ours)
    ours.close()
    theirs.close()


def test_a_deadline_waiting_its_turn_costs_no_cpu():
    watch = _Watch()  # its thread waits for this deadline alone
    with Deadline(30) as deadline:
        watch.add(deadline, time.monotonic() + 30)
        before = time.process_time()
        time.sleep(0.5)
        spent = time.process_time() - before

    assert spent < 0.1


def test_the_first_deadline_of_a_process_starts_the_thread_that_keeps_it():
    """As in a new process (the process's own thread may be running already: a watch of
    its own shows the start)."""
    watch, started = _Watch(), watch_threads()
    ours, theirs = socket.socketpair()
    deadline = Deadline(0.1)
    deadline.guard(ours)
    watch.add(deadline, time.monotonic() + 0.1)
    ours.settimeout(3)

    assert (ours.recv(1), deadline.expired) == (b"", True)
    assert len(watch_threads() - started) == 1
    ours.close()
    theirs.close()
