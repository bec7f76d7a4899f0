"""Streams and onnxruntime threads chosen for the cores, and explicit values kept."""

from __future__ import annotations

import pytest

from prodet.serve.parallelism import MAX_AUTO_STREAMS, Parallelism, plan_parallelism


@pytest.mark.parametrize(
    ("cores", "expected"),
    [(1, (1, 1)), (2, (2, 1)), (3, (3, 1)), (4, (4, 1)), (8, (4, 2)), (16, (4, 4))],
)
def test_cpu_gets_one_stream_per_core_up_to_the_cap(cores: int, expected: tuple[int, int]) -> None:
    assert plan_parallelism(cores) == Parallelism(*expected)
    assert plan_parallelism(cores).streams <= MAX_AUTO_STREAMS


def test_gpu_gets_one_stream_with_every_core() -> None:
    assert plan_parallelism(8, on_gpu=True) == Parallelism(1, 8)


def test_an_explicit_value_is_kept_and_the_other_follows_it() -> None:
    assert plan_parallelism(2, streams=1) == Parallelism(1, 2)  # the lowest lone latency
    assert plan_parallelism(8, intra_op_threads=2) == Parallelism(4, 2)
    assert plan_parallelism(2, intra_op_threads=4) == Parallelism(1, 4)
    assert plan_parallelism(2, streams=3, intra_op_threads=5) == Parallelism(3, 5)


def test_bad_values_name_the_setting() -> None:
    with pytest.raises(ValueError, match="streams, intra_op_threads >= 0"):
        plan_parallelism(2, streams=-1)
    with pytest.raises(ValueError, match="cores >= 1"):
        plan_parallelism(0)
