"""Phase 3 — workers: one process per decoder unit that loads, warms up, decodes and measures.

    executor.py       units of work (decoder, size, shard), slots, the executor interface and the
                      slot driver every executor shares
    local.py          the local executor: the suite's device, or one worker per GPU at once
    ray_executor.py   the same units as Ray actors (extra `cluster`)
    execution.py      which executor a run uses, the evaluation device, GPU state and idle power
                      around the decode phase, notes on units that ran side by side
    jobs.py           what a worker is told: its job and its decode tasks (batches of cases)
    worker.py         the decoder worker: load, warm-up per shape, timed decodes, output checks
    measure.py        the timed region (CUDA events / perf counters), peak memory, OOM detection
    energy.py         energy counters (NVML, RAPL), the worker's meter, idle power, GPU state
    meter.py          one block of timed calls measured with those counters (lengthened as needed)
    sink.py           where results land: records, and the image writer (PNG + fsync, background)
    channel.py        the typed messages between the runner and a worker
    process.py        child processes (shared with the source worker): logs, deadlines, deaths
    forkserver.py     the server children fork from (imports done once, never CUDA)
"""
