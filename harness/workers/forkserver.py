"""The forkserver children start from: torch, the harness's worker modules and the suite's decoders
imported once (never CUDA), so each worker is a fresh process without the imports' cost; spawn where
the platform has no forkserver or DECODERBENCH_START_METHOD=spawn asks (docs/execution.md).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Iterable

START_METHOD_ENV = "DECODERBENCH_START_METHOD"


# Imported by the forkserver before it forks any child (the suite's decoder modules are added).
BASE_PRELOAD = ("torch", "numpy", "PIL.Image", "safetensors.torch", "harness.workers.worker",
                "harness.sources.worker")


_server_lock = threading.Lock()


_server_started = False


START_METHODS = ("forkserver", "spawn")


def start_method_problem() -> str | None:
    """Why DECODERBENCH_START_METHOD cannot be used (one line), or None."""
    wanted = os.environ.get(START_METHOD_ENV, "")
    if wanted and wanted not in START_METHODS:
        return (f"{START_METHOD_ENV}={wanted!r}: expected one of {', '.join(START_METHODS)} (workers are "
                "processes: a decoder must not share one with the runner or another decoder)")
    return None


def start_method() -> str:
    """forkserver where the platform has it, unless DECODERBENCH_START_METHOD=spawn asks otherwise."""
    wanted = os.environ.get(START_METHOD_ENV, "")
    if wanted in ("spawn", "forkserver"):
        return wanted if wanted in multiprocessing.get_all_start_methods() else "spawn"
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def start_forkserver(preload: Iterable[str] = ()) -> bool:
    """Launch the forkserver now (it imports in the background) with these modules preloaded.

    Only the first call of a process chooses the modules: the server lives as long as the
    process. Returns False where children are spawned instead."""
    global _server_started
    if start_method() != "forkserver":
        return False
    with _server_lock:
        if not _server_started:
            os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(list(dict.fromkeys([*BASE_PRELOAD, *preload])))
            from multiprocessing import forkserver

            forkserver.ensure_running()
            _server_started = True
    return True


def _ready() -> None:
    """A child that does nothing: forked from the server, it proves the server is ready."""


def wait_for_server() -> float:
    """Block until the forkserver has imported its preload modules; the seconds waited.

    The server imports in the background from `start_forkserver()` on; a child asked of it is forked
    only once those imports are done. Without this wait, the first decoder's start-up (and so its
    cold start) would pay for the rest of them, whichever decoder the suite lists first."""
    if not start_forkserver():
        return 0.0
    begin = time.perf_counter()
    child = multiprocessing.get_context("forkserver").Process(target=_ready, name="decoderbench-ready")
    child.start()
    child.join()
    return time.perf_counter() - begin
