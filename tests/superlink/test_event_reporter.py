"""EventReporter: a ServerApp's run events go out in order, in the background, batched."""

from __future__ import annotations

import threading
import time

import pytest

from glade.errors import TransportError
from glade.superlink.reporter import EventReporter


def test_events_are_delivered_in_order_and_those_queued_meanwhile_together() -> None:
    first_in_flight = threading.Event()
    release = threading.Event()
    batches: list[list[int]] = []

    def deliver(items: list[int]) -> None:
        batches.append(list(items))
        if len(batches) == 1:
            first_in_flight.set()
            assert release.wait(5)

    reporter: EventReporter[int] = EventReporter(deliver)
    reporter.send(1)
    assert first_in_flight.wait(5)
    for item in (2, 3, 4):  # queued while the first delivery is in flight
        reporter.send(item)
    release.set()
    reporter.flush(timeout=5)
    assert batches == [[1], [2, 3, 4]]
    reporter.close(timeout=5)


def test_a_failed_delivery_is_raised_by_flush_and_then_by_nothing_else() -> None:
    def deliver(items: list[str]) -> None:
        raise TransportError("the SuperLink is away")

    reporter: EventReporter[str] = EventReporter(deliver)
    reporter.send("a")
    with pytest.raises(TransportError, match="away"):
        reporter.flush(timeout=5)
    reporter.flush(timeout=5)  # raised once
    reporter.close(timeout=5)


def test_the_next_send_raises_an_earlier_failure() -> None:
    failed = threading.Event()

    def deliver(items: list[str]) -> None:
        failed.set()
        raise TransportError("refused")

    reporter: EventReporter[str] = EventReporter(deliver)
    reporter.send("a")
    assert failed.wait(5)
    with pytest.raises(TransportError, match="refused"):
        for _ in range(200):  # the failure is recorded right after deliver returns
            reporter.send("b")
            threading.Event().wait(0.01)
    reporter.close(timeout=5)


def test_flush_gives_up_after_its_timeout() -> None:
    release = threading.Event()
    reporter: EventReporter[int] = EventReporter(lambda items: release.wait(5))
    reporter.send(1)
    reporter.send(2)
    with pytest.raises(TransportError, match=r"not sent to the SuperLink within 0\.1 s"):
        reporter.flush(timeout=0.1)
    release.set()
    reporter.close(timeout=5)


def test_close_delivers_what_is_queued_and_refuses_more() -> None:
    delivered: list[int] = []
    reporter: EventReporter[int] = EventReporter(delivered.extend)
    for item in range(100):
        reporter.send(item)
    reporter.close(timeout=5)
    assert delivered == list(range(100))
    with pytest.raises(RuntimeError, match="closed"):
        reporter.send(100)


def test_items_close_together_go_in_one_delivery_and_flush_does_not_linger() -> None:
    batches: list[list[int]] = []
    reporter: EventReporter[int] = EventReporter(batches.append, linger_s=30.0)
    for item in (1, 2, 3):  # e.g. the end of a round and the start of the next
        reporter.send(item)
    started = time.monotonic()
    reporter.flush(timeout=5)
    assert time.monotonic() - started < 2  # flushing cuts the linger short
    assert batches == [[1, 2, 3]]
    reporter.close(timeout=5)
