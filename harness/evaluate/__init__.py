"""Phase 5 — evaluation: metrics over the stored outputs, after every decoder has exited.

    phase.py    evaluate(): the metrics of the suite in passes, their manifest entries and notes;
                weights_arrived(): metrics a resume scores again
    feeder.py   one metric: what it still needs, what it is fed, its records
    stream.py   one pass: sets batch by batch, PNGs read ahead by a background thread
"""

from harness.evaluate.phase import evaluate, metric_info, passes, weights_arrived
from harness.evaluate.stream import READ_AHEAD_BATCHES, REFERENCE_CACHE_BYTES, Batch, Reader

__all__ = ["READ_AHEAD_BATCHES", "REFERENCE_CACHE_BYTES", "Batch", "Reader", "evaluate", "metric_info",
           "passes", "weights_arrived"]
