"""How many batches run at once, and on how many onnxruntime threads each.

Two settings share the cores: ``inference_streams`` (batches running at the same time on
the one session) and ``intra_op_threads`` (onnxruntime's threads per batch). Either left at
0 is chosen here:

* **On the CPU,** one stream per core, up to ``MAX_AUTO_STREAMS``, with the cores divided
  among them: on 2 cores, 2 streams of 1 thread; on 16, 4 streams of 4 threads. One batch
  per core lets the serial parts of one run (NMS, gathers) and the image decoding of
  waiting requests overlap another run's convolutions. Measured on the 2-core benchmark
  machine with 12-MP camera JPEGs (docs/serve.md, "Tuning for throughput on a CPU"): 2 x 1
  serves 58.9 images/s at 8 clients against 48.1 for one stream on all cores, and uses 32
  ms of CPU per image against 40; a lone request waits 37.6 ms against 32.4. More than
  ``MAX_AUTO_STREAMS`` streams would only trade a lone request's latency for throughput
  that the cores cannot give anyway.
* **On a GPU,** one stream: the device runs one batch at a time, and a second stream only
  adds a copy in flight; its threads (for the few operators onnxruntime leaves on the CPU)
  get every core. ``prodet serve`` fixes the session's threads before onnxruntime says
  whether CUDA loaded, so there they follow the CPU rule; a Ray replica that reserves a
  GPU is planned as one from the start.

An explicit value is kept, and the other follows it: ``--inference-streams 1`` alone gives
that stream every core; ``--intra-op-threads 2`` alone on 8 cores gives 4 streams.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

MAX_AUTO_STREAMS = 4


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class Parallelism:
    """Attributes:
    streams: batches that may run at the same time (``MicroBatcher``'s ``streams``).
    intra_op_threads: onnxruntime's intra-op threads per run (at least 1).
    """

    streams: int
    intra_op_threads: int


def plan_parallelism(
    cores: int, *, streams: int = 0, intra_op_threads: int = 0, on_gpu: bool = False
) -> Parallelism:
    """Fill in the settings left at 0 (see the module docstring).

    Args:
        cores: the cores to use (``usable_cores()``).
        streams: ``inference_streams`` as set (0: choose).
        intra_op_threads: ``intra_op_threads`` as set (0: choose).
        on_gpu: the model runs on CUDA or TensorRT.

    Raises:
        ValueError: a negative value, or fewer than one core.
    """
    if cores < 1 or streams < 0 or intra_op_threads < 0:
        raise ValueError(
            f"need cores >= 1 and streams, intra_op_threads >= 0 (0: choose), got "
            f"{cores}, {streams}, {intra_op_threads}"
        )
    if intra_op_threads:
        cpu_streams = max(1, min(MAX_AUTO_STREAMS, cores // intra_op_threads))
    else:
        cpu_streams = min(cores, MAX_AUTO_STREAMS)
    planned_streams = streams or (1 if on_gpu else cpu_streams)
    threads = intra_op_threads or max(1, cores // planned_streams)
    return Parallelism(planned_streams, threads)
