"""How a rate is counted: a window that slides in steps of a bucket."""

import pytest

from conversations.shared import ratelimits


def test_the_window_slides_so_a_burst_across_its_edge_is_still_refused(clock, db):
    rate = ratelimits.Rate("test", limit=5, window=60)
    clock.now = 1_800_000_055.0  # five seconds before a minute's edge
    assert not any(rate.hit("x").refused for _ in range(5))
    clock.advance(6)
    refused = rate.hit("x")
    assert refused.refused
    # The five stay counted until their bucket leaves the window: 65 s after them.
    assert refused.wait == pytest.approx(59)
    clock.advance(59)
    assert not rate.hit("x").refused
