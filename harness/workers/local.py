"""The local executor: the suite's device (one slot), or one worker per GPU of this node at once.

`--gpus` / `timing.gpus` name the GPUs (each worker pinned with CUDA_VISIBLE_DEVICES); a device
or GPU this machine does not have is refused before anything is written (docs/execution.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from harness.workers.channel import DecodeTask, WorkerJob
from harness.workers.executor import ExecutorError, Policy, Sink, Slot, Unit, run_slots
from harness.workers.process import WorkerProcess, visible_devices
from harness.workers.worker import worker_main


def parse_gpus(spec: str | Sequence[int] | None) -> str | list[int] | None:
    """`all`, `0,1,3` or a list of indices → "all" or sorted unique indices; None stays None."""
    if spec is None or spec == "all":
        return spec
    if isinstance(spec, str):
        try:
            spec = [int(part) for part in spec.split(",") if part.strip()]
        except ValueError:
            raise ExecutorError(f"--gpus: expected 'all' or GPU indices like 0,1,3, got {spec!r}") from None
    if not spec or any(index < 0 for index in spec):
        raise ExecutorError(f"--gpus: expected 'all' or GPU indices >= 0, got {list(spec)}")
    return sorted(set(spec))


def visible_gpu_count() -> int:
    """GPUs this process could use, counted through NVML (initialises no CUDA context)."""
    import os

    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def require_devices(suite: Any) -> None:
    """Refuse, in one line and before a run directory exists, a suite whose devices this machine
    does not have: a CUDA timing, evaluation or judge device, or --gpus, without a visible GPU (the
    worker would die at load with no error line), or a cuda:N beyond the GPUs this process sees."""
    model = suite.model
    judge = model.judge
    wanted = [("timing.device", model.timing.device), ("evaluation.device", model.evaluation.device)]
    if judge is not None and judge.backend == "local":
        wanted.append(("judge.device", judge.device))
    wanted = [(key, device) for key, device in wanted if device and device.startswith("cuda")]
    gpus = model.timing.gpus
    if not wanted and gpus is None:
        return
    count = visible_gpu_count()
    if count == 0:
        import os

        shown = "all" if gpus == "all" else ",".join(map(str, gpus or []))
        key, device = wanted[0] if wanted else ("--gpus", shown)
        why = "no NVIDIA driver is loaded" if not os.path.exists("/proc/driver/nvidia/version") else \
            "CUDA sees no device (CUDA_VISIBLE_DEVICES, or the driver)"
        raise ExecutorError(f"{key} {device!r}: this machine has no GPU that CUDA can use ({why}); "
                            "run on the CPU (--device cpu), or on a machine with a GPU")
    for key, device in wanted:
        index = int(device.partition(":")[2] or 0)
        if index >= count:
            raise ExecutorError(f"{key} {device!r}: this process sees {count} GPU(s), "
                                f"cuda:0 to cuda:{count - 1}")
    if isinstance(gpus, list) and visible_devices() is None and max(gpus) >= count:
        raise ExecutorError(f"--gpus {','.join(map(str, gpus))}: this machine has {count} GPU(s), "
                            f"indices 0 to {count - 1}")


def local_slots(gpus: str | Sequence[int] | None, device: str) -> list[Slot]:
    """The local executor's slots: the suite's device alone, or one slot per requested GPU.

    With a CPU timing device, GPU slots only pin CUDA_VISIBLE_DEVICES: the workers decode on the
    CPU, side by side (how the scheduling is tested without GPUs; the manifest says so)."""
    wanted = parse_gpus(gpus)
    if wanted is None:
        return [Slot("local")]
    if device.startswith("cuda:"):
        raise ExecutorError(f"--gpus chooses the GPUs itself: use device 'cuda', not {device!r}")
    if wanted == "all":
        count = visible_gpu_count()
        if count == 0:
            raise ExecutorError("--gpus all: no GPU is visible to this process")
        # Every GPU this process sees: under an existing CUDA_VISIBLE_DEVICES mask, the GPUs it names
        # (physical indices; a mask of UUIDs pins each UUID and records its position).
        visible = visible_devices() or [str(index) for index in range(count)]
        return [_gpu_slot(int(pinned) if pinned.isdigit() else position, pinned, device)
                for position, pinned in enumerate(visible[:count])]
    return [_gpu_slot(index, str(index), device) for index in wanted]


def _gpu_slot(index: int, pinned: str, device: str) -> Slot:
    return Slot(f"gpu{index}", index, {"CUDA_VISIBLE_DEVICES": pinned}, "cuda" if device == "cuda" else None)


class LocalWorker:
    """A worker process on this machine (forkserver child), pinned by its slot's environment."""

    def __init__(self, job: WorkerJob, slot: Slot) -> None:
        self.process = WorkerProcess(job, worker_main, env=slot.env)
        self.started = self.process.started

    def loaded(self, timeout_s: float) -> Any:
        return self.process.receive(timeout_s)

    def send(self, task: DecodeTask) -> None:
        self.process.send(task)

    def receive(self, timeout_s: float) -> Any:
        return self.process.receive(timeout_s)

    def close(self) -> None:
        self.process.close()

    def kill(self) -> None:
        self.process.kill()


class LocalExecutor:
    """Units on this machine: one slot (the suite's device) or one per GPU, concurrently."""

    name = "local"
    crash_retries = 0  # a worker that dies here is the decoder's doing: a result, not retried

    def __init__(self, slots: Sequence[Slot]) -> None:
        self.slots = list(slots)

    def warm_up(self) -> float:
        """The worker server ready before any decoder's clock starts (harness.workers.process)."""
        from harness.workers.forkserver import wait_for_server

        return wait_for_server()

    def run(self, units: Sequence[Unit], sink: Sink, policy: Policy) -> None:
        run_slots(self.slots, units, LocalWorker, sink, policy)

    def describe(self) -> dict[str, Any]:
        from harness.workers.forkserver import start_method

        return {"executor": self.name, "start_method": start_method(),
                "slots": [{"label": s.label, "gpu_index": s.gpu_index} for s in self.slots]}
