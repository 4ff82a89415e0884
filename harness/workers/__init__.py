"""Phase 3 — workers: one spawned process per decoder that loads, warms up, decodes and measures.

    worker.py     the decoder worker: load, warm-up per shape, timed decodes, output checks, PNGs
    measure.py    the timed region (CUDA events / perf counters), peak memory, OOM detection
    channel.py    the typed messages between the runner and a worker
    process.py    spawned child processes (shared with the source worker): logs, deadlines, deaths
"""
