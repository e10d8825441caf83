"""The data-parallel chapter's cost model (d2l_lite.parallel)."""

import pytest

from d2l_lite import architecture, counting, parallel

PARAMS = counting.total_params(counting.count_network(architecture.BOOK))


def test_ring_allreduce_moves_2_n_minus_1_over_n_of_the_gradients():
    assert parallel.allreduce_bytes(PARAMS, 1) == 0
    assert parallel.allreduce_bytes(PARAMS, 2) == PARAMS * 4  # 2 * 1/2 of the bytes
    assert parallel.allreduce_bytes(PARAMS, 4) == pytest.approx(1.5 * PARAMS * 4)
    assert parallel.allreduce_bytes(PARAMS, 8, bytes_per_value=2) == pytest.approx(
        1.75 * PARAMS * 2)
    with pytest.raises(ValueError, match="num_devices"):
        parallel.allreduce_bytes(PARAMS, 0)


def test_speedup_is_n_on_an_infinitely_fast_link_and_below_n_otherwise():
    assert parallel.speedup(0.02, PARAMS, 1, 1e9) == 1
    assert parallel.speedup(0.02, PARAMS, 8, float("inf")) == 8
    slow, fast = (parallel.speedup(0.02, PARAMS, 8, bw) for bw in (12.5e9, 450e9))
    assert 1 < slow < fast < 8
    # the all-reduce at 12.5 GB/s: 1.75 x 23.9 MB / 12.5 GB/s = 3.3 ms on top of 20 ms
    assert parallel.step_seconds(0.02, PARAMS, 8, 12.5e9) == pytest.approx(
        0.02 + 1.75 * PARAMS * 4 / 12.5e9)
