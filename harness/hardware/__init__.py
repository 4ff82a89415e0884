"""Hardware runners: what a bench session (`nox -s bench-h100`, `nox -s bench-gb200`) needs
beyond a suite run.

    cuda.py      the CUDA preflight: the runner's torch, its CUDA build, its kernels for the
                 GPUs' compute capability, the GPU family the session is for (stdlib only, so
                 that a session can ask before it installs anything; torch is imported inside)
    walls.py     how far a memory-wall sweep searches on a device of a given memory (stdlib only)
    session.py   a session folder read back: per suite, the rows measured, unavailable and out
                 of memory; the verdict that makes a session green or red
"""
