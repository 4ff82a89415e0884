"""Child processes: the machinery decoder workers and the source worker share.

Child side: leave at once when done, log to a file, die with the parent, describe the device and
torch's state. Parent side (`WorkerProcess`): start (from harness/workers/forkserver.py), send, wait
with a deadline, and name why a child died (`WorkerGone`) (docs/execution.md).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import multiprocessing
import os
import re
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.store import ENVIRONMENT_ERRNOS, INFRASTRUCTURE_ERROR
from harness.workers.forkserver import start_forkserver, start_method


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
        except BaseException as exc:
            with contextlib.suppress(OSError, ValueError):
                traceback.print_exc()
            code = ENVIRONMENT_EXIT if environment_error(exc) else 1
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)

    return main


# A worker that dies of an environment failure (its log or pipe gone, a full disk) exits with this
# code (sysexits' EX_TEMPFAIL): the parent records infrastructure_error, which resume runs again.
ENVIRONMENT_EXIT = 75


def environment_error(exc: BaseException) -> bool:
    """An exception that is the machine's doing, not the decoder's: a write the disk refused, a
    pipe or stream that closed."""
    return isinstance(exc, OSError) and exc.errno in ENVIRONMENT_ERRNOS


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


def visible_devices() -> list[str] | None:
    """The GPUs CUDA_VISIBLE_DEVICES lets this process see, in its cuda:N order; None: not set."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return None if visible is None else [v.strip() for v in visible.split(",") if v.strip()]


def placement(device: torch.device) -> dict[str, Any]:
    """Where this worker runs: host, physical GPU index and model (None on CPU), and the
    CUDA_VISIBLE_DEVICES it was pinned with (a GPU index is physical: the pinned list is mapped)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    facts: dict[str, Any] = {"host": socket.gethostname(), "gpu_index": None, "gpu_name": None,
                             "cuda_visible_devices": visible}
    if device.type == "cuda":
        logical = device.index if device.index is not None else torch.cuda.current_device()
        ids = visible_devices() or []
        physical: int | str = ids[logical] if logical < len(ids) else logical
        facts["gpu_index"] = int(physical) if str(physical).isdigit() else physical
        facts["gpu_name"] = torch.cuda.get_device_name(logical)
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
    if fd <= 2:  # a parent started with a closed stream (`2>&-`): never dup the log onto itself
        fd = os.dup(fd) if fd in (1, 2) else fd
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    if fd > 2:
        os.close(fd)
    for name, number in (("stdout", 1), ("stderr", 2)):
        stream = getattr(sys, name)
        if stream is None:  # Python started without this descriptor: give it one on the log
            setattr(sys, name, open(number, "w", buffering=1, encoding="utf-8",  # noqa: SIM115
                                    errors="backslashreplace", closefd=False))
        else:
            stream.reconfigure(line_buffering=True)


def die_with_parent() -> None:
    """Ask the kernel to SIGKILL this worker if its parent dies (Linux).

    The parent is the runner (spawn) or the forkserver, which leaves when the runner does."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        return
    parent = multiprocessing.parent_process()
    if parent is not None and not parent.is_alive():
        os._exit(1)  # the runner died before prctl took effect


def _child_main(target: Callable[[Any, Any], None], conn: Any, job: Any,
                environ: Mapping[str, str]) -> None:
    """First code of every child: the parent's environment of now (a forkserver child would
    otherwise see the server's) and fresh random seeds (a forked child would otherwise share the
    server's torch and numpy generator states), then the worker's own entry point."""
    os.environ.clear()
    os.environ.update(environ)
    torch.seed()  # as a fresh interpreter would: a nondeterministic seed (CUDA's set lazily)
    np.random.seed()
    target(conn, job)


class WorkerGone:
    """The worker died or stopped answering; `reason` says how (its first line says why)."""

    def __init__(self, status: str, reason: str) -> None:
        self.status, self.reason = status, reason


# Signals a decoder's own code raises when it fails (its fault: `crashed`); SIGTERM, SIGHUP, SIGINT
# and SIGQUIT come from outside (an operator, a scheduler, a shutdown: `infrastructure_error`).
OUTSIDE_SIGNALS = frozenset({signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGQUIT})


OOM_COUNTERS = (Path("/sys/fs/cgroup/memory.events"), Path("/proc/vmstat"))  # cgroup v2, machine


def oom_kill_counts() -> tuple[int | None, ...]:
    """The kernel's OOM-kill counters (this cgroup's, the machine's); None where unreadable."""
    counts: list[int | None] = []
    for path in OOM_COUNTERS:
        try:
            lines = path.read_text().splitlines()
        except OSError:
            counts.append(None)
            continue
        found = [int(line.split()[1]) for line in lines if line.startswith("oom_kill ")]
        counts.append(found[0] if found else None)
    return tuple(counts)


def killed_by_oom(before: tuple[int | None, ...], after: tuple[int | None, ...]) -> bool | None:
    """Whether the kernel's OOM killer killed a process between two readings: True, False, or None
    when no counter could be read (then a SIGKILL cannot be attributed)."""
    pairs = [(a, b) for a, b in zip(before, after, strict=True) if a is not None and b is not None]
    if not pairs:
        return None
    return any(b > a for a, b in pairs)


def death_of(code: int | None, tail: str, oom: bool | None) -> WorkerGone:
    """What a worker's exit code (negative: the signal) and log tail say: whose failure, and why.

    A signal from the decoder's own code (SIGSEGV, SIGABRT, SIGBUS, ...) or an exit with an error is
    the decoder's (`crashed`). A SIGKILL the runner did not send (the runner records a kill it sends
    for a timeout as `timeout`, and never reads it back as a death) is the kernel's OOM killer when
    its counter rose while the worker ran — out of memory, the decoder's (`oom`) — and otherwise
    another process's (`infrastructure_error`); where no counter can be read it stays `crashed`.
    SIGTERM and the like come from outside; so does an exit with ENVIRONMENT_EXIT."""
    cause = _last_error_line(tail)
    detail = f": {cause}" if cause else ""
    if code is not None and code < 0:
        number = -code
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        what = (signal.strsignal(number) or name).lower()
        if number == signal.SIGKILL:
            if oom is True:
                status, reason = "oom", ("worker process killed by the kernel's OOM killer (SIGKILL, "
                                         "signal 9): the machine ran out of memory while it decoded")
            elif oom is False:
                status, reason = INFRASTRUCTURE_ERROR, (
                    "worker process killed by SIGKILL (signal 9) from outside decoderbench: not by the "
                    "runner and not by the kernel's OOM killer (its counter did not move)")
            else:
                status, reason = "crashed", ("worker process died with SIGKILL (signal 9): the kernel's OOM "
                                             "killer or another process (no OOM counter is readable here)")
        elif number in OUTSIDE_SIGNALS:
            status, reason = INFRASTRUCTURE_ERROR, (f"worker process stopped by {name} ({what}, signal "
                                                    f"{number}) from outside decoderbench")
        else:
            status, reason = "crashed", f"worker process died with {name} ({what}, signal {number})"
    elif code == ENVIRONMENT_EXIT:
        status, reason = INFRASTRUCTURE_ERROR, f"worker process stopped by an environment failure{detail}"
    else:
        status, reason = "crashed", f"worker process exited with code {code}{detail}"
    return WorkerGone(status, f"{reason}\nlog tail:\n{tail}" if tail else reason)


_ERROR_LINE = re.compile(
    r"^(?:[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Warning)|Fatal Python error)\b.*")


def _last_error_line(tail: str) -> str:
    """The line of a log tail that names what went wrong (an exception, a fatal error), or ''."""
    found = [line.strip() for line in tail.splitlines() if _ERROR_LINE.match(line.strip())]
    return found[-1][:300] if found else ""


class WorkerProcess:
    """A child running `target(conn, job)` (a decoder worker, the source worker).

    `env`: variables set in the child on top of the parent's environment (GPU pinning)."""

    def __init__(self, job: Any, target: Callable[[Any, Any], None],
                 name: str | None = None, env: Mapping[str, str] | None = None) -> None:
        method = start_method()
        start_forkserver()  # no-op where children are spawned, or once the server runs
        context = multiprocessing.get_context(method)
        self.job = job
        self._conn, child_conn = context.Pipe()
        environ = {**os.environ, **(env or {})}
        self._proc = context.Process(
            target=_child_main, args=(target, child_conn, job, environ),
            name=name or f"decoderbench-{job.decoder_id}",
        )
        self.started = time.perf_counter()
        self._oom_before = oom_kill_counts()
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
        return death_of(self._proc.exitcode, _log_tail(Path(self.job.log_path)),
                        killed_by_oom(self._oom_before, oom_kill_counts()))

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
