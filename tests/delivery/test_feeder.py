"""The daemon stream's reader (``_Feeder``): a thread that reads the stream ahead of the
sending loop, as far as the stream has jobs ready and at most ``AHEAD``, and rings the loop's
``select`` once when jobs come after it had none, not once a job."""

from __future__ import annotations

import queue
import select
import threading
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest

from digest.delivery._batch import _Feeder, _Job, _Later
from digest.models import Subscriber

ED = date(2026, 11, 25)


def job(i: int) -> _Job:
    return _Job(Subscriber(email=f"r{i}@example.org", name=None, timezone="UTC",
                           schedule="0 7 * * *", max_papers=5, topics=()), ED, None)


def readable(feeder: _Feeder, timeout: float = 0.0) -> bool:
    return bool(select.select([feeder.fileno()], [], [], timeout)[0])


def wait_for(check: Any, timeout: float = 10.0) -> None:
    done = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if check():
            return
        done.wait(0.01)
    raise AssertionError("condition not reached")


def test_ready_jobs_come_in_order_with_one_ring_and_no_more_than_ahead_are_read() -> None:
    n = 3 * _Feeder.AHEAD
    read = [0]
    taken = [0]
    overrun: list[int] = []

    def source() -> Iterator[_Job]:
        for i in range(n):
            if read[0] - taken[0] > _Feeder.AHEAD:
                overrun.append(read[0] - taken[0])
            read[0] += 1
            yield job(i)

    feeder = _Feeder(source())
    try:
        wait_for(lambda: read[0] == _Feeder.AHEAD)  # read ahead, then held at the bound
        assert readable(feeder, 5.0)
        got: list[str] = []
        while len(got) < n:
            item = feeder.take(block=True)
            assert isinstance(item, _Job)
            got.append(item.subscriber.email)
            taken[0] += 1
        assert got == [f"r{i}@example.org" for i in range(n)]
        assert feeder.take(block=True) is None  # the stream's end
        assert not overrun
        assert not readable(feeder)  # every ring byte was taken with its answers
    finally:
        feeder.close()


def test_a_stream_that_waits_gives_later_then_rings_when_a_job_comes() -> None:
    fires: queue.Queue[_Job | None] = queue.Queue()

    def source() -> Iterator[_Job]:
        while (item := fires.get()) is not None:
            yield item

    feeder = _Feeder(source())
    try:
        assert isinstance(feeder.take(block=False), _Later)
        assert not readable(feeder, 0.05)
        fires.put(job(1))
        fires.put(job(2))
        assert readable(feeder, 5.0)
        first = feeder.take(block=False)
        assert isinstance(first, _Job) and first.subscriber.email == "r1@example.org"
        second = feeder.take(block=True)
        assert isinstance(second, _Job) and second.subscriber.email == "r2@example.org"
        assert not readable(feeder)
        assert isinstance(feeder.take(block=False), _Later)
        fires.put(job(3))  # after it had none: rings again
        assert readable(feeder, 5.0)
        third = feeder.take(block=False)
        assert isinstance(third, _Job) and third.subscriber.email == "r3@example.org"
    finally:
        fires.put(None)
        feeder.close()


def test_an_error_in_the_stream_is_raised_where_the_job_is_taken() -> None:
    def source() -> Iterator[_Job]:
        yield job(1)
        raise RuntimeError("the stream broke")

    feeder = _Feeder(source())
    try:
        first = feeder.take(block=True)
        assert isinstance(first, _Job)
        with pytest.raises(RuntimeError, match="the stream broke"):
            feeder.take(block=True)
    finally:
        feeder.close()


def test_close_waits_for_a_job_being_read_and_leaves_the_rest_unread() -> None:
    fires: queue.Queue[_Job | None] = queue.Queue()
    read: list[str] = []

    def source() -> Iterator[_Job]:
        while (item := fires.get()) is not None:
            read.append(item.subscriber.email)
            yield item

    feeder = _Feeder(source())
    fires.put(job(1))
    wait_for(lambda: read == ["r1@example.org"])
    closer = threading.Thread(target=feeder.close)
    closer.start()
    closer.join(0.2)
    assert closer.is_alive()  # the thread is in the stream, waiting for its next job
    fires.put(job(2))  # it comes; the feeder stops without reading further
    fires.put(job(3))
    closer.join(10)
    assert not closer.is_alive()
    assert read == ["r1@example.org", "r2@example.org"]
    assert fires.get_nowait() is not None  # job 3 was never taken from the stream


def test_the_room_taken_goes_back_to_the_thread_in_batches() -> None:
    """The thread is woken once per ``REFILL`` jobs taken, not once a job (each wake-up took
    the GIL from the loop), and never lacks room while the loop has nothing to take: a stream
    that trickles is read as it comes."""
    read = [0]
    more = threading.Event()

    def source() -> Iterator[_Job]:
        i = 0
        while True:
            if i == _Feeder.AHEAD + _Feeder.REFILL:
                more.wait(10)  # the stream pauses here, then trickles
            read[0] += 1
            yield job(i)
            i += 1

    feeder = _Feeder(source())
    try:
        wait_for(lambda: read[0] == _Feeder.AHEAD)
        for _ in range(_Feeder.REFILL - 1):
            assert isinstance(feeder.take(block=True), _Job)
        threading.Event().wait(0.2)
        assert read[0] == _Feeder.AHEAD  # nothing read back yet
        assert isinstance(feeder.take(block=True), _Job)  # the REFILL-th: the room goes back
        wait_for(lambda: read[0] == _Feeder.AHEAD + _Feeder.REFILL)
        for _ in range(_Feeder.AHEAD):  # the loop takes all there is
            assert isinstance(feeder.take(block=True), _Job)
        assert isinstance(feeder.take(block=False), _Later)
        more.set()  # the paused stream's next job is read at once
        item = feeder.take(block=True)
        assert isinstance(item, _Job)
        assert item.subscriber.email == f"r{_Feeder.AHEAD + _Feeder.REFILL}@example.org"
    finally:
        more.set()
        feeder.close()
