"""Watch's debouncing: due after the quiet time, never later than the maximum delay, one reload per maximum
delay during a long burst; the `--debounce MIN[:MAX]` grammar."""
from __future__ import annotations

import pytest

from lbgen.watch.debounce import Debouncer, parse_debounce


def test_debouncer_waits_for_quiet_but_not_longer_than_the_maximum():
    d = Debouncer(0.1, 1.0)
    assert d.deadline() is None and not d.due(0)
    d.add(10.0)
    assert d.due(10.0)  # the first event after a quiet spell: at once
    d.clear()
    for t in (10.05, 10.1, 10.15, 10.2):  # within the burst: 100ms of quiet first
        d.add(t)
    assert d.deadline() == pytest.approx(10.3)
    for i in range(30):  # events every 50ms for 1.5s: quiet never comes, the maximum delay does
        d.add(10.2 + i * 0.05)
    assert d.deadline() == pytest.approx(11.05)


def test_debouncer_throttles_a_long_burst_after_a_reload():
    d = Debouncer(0.1, 1.0)
    d.add(0.0)
    d.fired(0.0)  # the at-once apply of the burst's first event
    d.add(0.2)
    assert d.deadline() == pytest.approx(0.3)  # the rest of the burst is not held back by it
    d.fired(0.3)
    d.add(0.5)
    assert d.deadline() == pytest.approx(1.3)  # not 0.6: one reload per second while the burst goes on
    d.fired(1.3)
    d.add(5.0)  # after a quiet spell the first event is at once again
    assert d.deadline() == pytest.approx(5.0)


def test_a_network_connect_waits_for_the_start_that_follows_it():
    d = Debouncer(0.1, 1.0, hold=0.5)
    d.add(0.0, hold=True)  # `docker run`: the network connect comes first
    assert d.deadline() == pytest.approx(0.5)  # alone: half a second later (a live `docker network connect`)
    d.add(0.3)  # the container's start: at once, the batch began after a quiet spell
    assert d.deadline() == pytest.approx(0.3)
    d.clear()
    d.add(0.4, hold=True)
    d.add(0.45)  # within a burst: the usual quiet time
    assert d.deadline() == pytest.approx(0.55)


@pytest.mark.parametrize("text, expected", [("100ms:1s", (0.1, 1.0)), ("500ms:2s", (0.5, 2.0)),
                                            ("200ms", (0.2, 1.0)), ("3s", (3.0, 3.0)), ("0:1s", (0.0, 1.0))])
def test_parse_debounce(text, expected):
    assert parse_debounce(text) == expected


@pytest.mark.parametrize("text", ["fast", "1s:100ms", "100ms:", ":1s"])
def test_parse_debounce_rejects(text):
    with pytest.raises(ValueError, match="--debounce"):
        parse_debounce(text)

