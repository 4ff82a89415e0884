"""Spawned child processes: the machinery decoder workers and the source worker share.

Child side: leave at once when done (`exits_fast`), send output to a log
(`redirect_output`), die with the parent (`die_with_parent`), describe the
device and the process-wide torch state. Parent side (`WorkerProcess`):
spawn, send, wait with a deadline, and turn a dead or hung child into a
reason string (`WorkerGone`).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import multiprocessing
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

# =========================================================================== child side


def exits_fast(serve: Callable[..., None]) -> Callable[..., None]:
    """Wrap a worker's main function so the process leaves at once when it is done.

    A normal interpreter shutdown with torch loaded takes ~1 s, and the next decoder's worker
    waits for this one to be gone. The kernel frees everything (a CUDA context included) either
    way; only the logs need flushing first. An unexpected exception still prints its traceback
    to the log and exits with 1, as Python would.
    """

    @functools.wraps(serve)
    def main(*args: Any) -> None:
        code = 0
        try:
            serve(*args)
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)

    return main


def excerpt(exc: BaseException, lines: int = 12) -> str:
    text = "".join(traceback.format_exception(exc)).rstrip().splitlines()
    return "\n".join(text[-lines:])


def device_facts(device: torch.device) -> dict[str, Any]:
    facts: dict[str, Any] = {"device": str(device), "threads": torch.get_num_threads()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        facts.update(
            gpu_name=props.name, capability=f"{props.major}.{props.minor}",
            total_memory_bytes=props.total_memory, cuda_runtime=torch.version.cuda,
        )
    return facts


def torch_state() -> dict[str, Any]:
    """Process-wide torch settings a decoder may have changed on load."""
    return {
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "tf32_cudnn": torch.backends.cudnn.allow_tf32,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "initial_seed": torch.initial_seed(),
        "num_threads": torch.get_num_threads(),
    }


def redirect_output(log_path: Path) -> None:
    """Decoder prints and crash dumps go to the decoder's log, not the parent's terminal."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    sys.stderr.reconfigure(line_buffering=True)  # type: ignore[union-attr]


def die_with_parent() -> None:
    """Ask the kernel to SIGKILL this worker if the runner dies (Linux)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        return
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:
        os._exit(1)  # the parent died before prctl took effect


# =========================================================================== parent side


class WorkerGone:
    """The worker died or stopped answering; `reason` says how."""

    def __init__(self, status: str, reason: str) -> None:
        self.status, self.reason = status, reason


class WorkerProcess:
    """A spawned child running `target(conn, job)` (a decoder worker, the source worker)."""

    def __init__(self, job: Any, target: Callable[[Any, Any], None],
                 name: str | None = None) -> None:
        context = multiprocessing.get_context("spawn")
        self.job = job
        self._conn, child_conn = context.Pipe()
        self._proc = context.Process(
            target=target, args=(child_conn, job), name=name or f"decoderbench-{job.decoder_id}"
        )
        self.started = time.perf_counter()
        self._proc.start()
        child_conn.close()

    @property
    def pid(self) -> int | None:
        return self._proc.pid

    def send(self, task: Any) -> None:
        self._conn.send(task)

    def receive(self, timeout_s: float) -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                return WorkerGone("timeout", f"no answer within {timeout_s:g} s; worker killed")
            try:
                if self._conn.poll(min(remaining, 0.25)):
                    return self._conn.recv()
            except (EOFError, OSError):
                return self._gone()
            if not self._proc.is_alive() and not self._poll_quietly():
                return self._gone()

    def _poll_quietly(self) -> bool:
        try:
            return self._conn.poll(0)
        except (EOFError, OSError):
            return False

    def _gone(self) -> WorkerGone:
        self._proc.join(timeout=5)
        code = self._proc.exitcode
        if code is not None and code < 0:
            name = signal.Signals(-code).name
            hint = " (the kernel's OOM killer sends this too)" if name == "SIGKILL" else ""
            reason = f"worker process died with {name}{hint}"
        else:
            reason = f"worker process exited with code {code}"
        tail = _log_tail(Path(self.job.log_path))
        return WorkerGone("crashed", f"{reason}; log tail:\n{tail}" if tail else reason)

    def kill(self) -> None:
        if self._proc.is_alive():
            self._proc.kill()
        self._proc.join(timeout=10)

    def close(self) -> None:
        """Ask the worker to stop; kill it if it does not."""
        with contextlib.suppress(BrokenPipeError, OSError):
            self._conn.send(None)
        self._proc.join(timeout=10)
        self.kill()
        self._conn.close()


def _log_tail(path: Path, size: int = 1500) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - size))
            return handle.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""
