"""The Ray executor: units of work as Ray actors, on a local Ray instance or an existing cluster.

Each actor runs the decoder worker's own code, so the records are those of a local worker; inputs
and outputs travel through Ray's object store and the driver writes the run (docs/execution.md).
"""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import socket
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from harness.store import INFRASTRUCTURE_ERROR
from harness.workers.channel import DecodeTask, WorkerJob
from harness.workers.executor import ExecutorError, Policy, Sink, Slot, Unit, run_slots
from harness.workers.process import WorkerGone
from harness.workers.worker import load_decoder, serve_task

INSTALL = "pip install 'decoderbench[cluster]'"


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ExecutorError(f"--executor ray needs Ray, which is not installed: {INSTALL}") from None
    return ray


class RayWorker:
    """The decoder worker inside a Ray actor's process (wrapped by ray.remote at run time)."""

    def __init__(self, job: WorkerJob) -> None:
        self.job = job
        self.decoder: Any = None
        self.warmed: set[Any] = set()
        self.loaded_rss_bytes: int | None = None

    def load(self) -> Any:
        faulthandler.enable()
        self.decoder, reply, self.loaded_rss_bytes = load_decoder(self.job)
        return reply

    def run(self, task: DecodeTask) -> Any:
        return serve_task(self.decoder, self.job, task, self.warmed, self.loaded_rss_bytes)


def with_input_bytes(task: DecodeTask) -> DecodeTask:
    """The task with each cached latent's file bytes in it (the worker checks their sha256)."""
    cases = tuple(replace(case, input_data=Path(case.input_path).read_bytes())
                  if case.input_path is not None else case for case in task.cases)
    return replace(task, cases=cases)


class RayHandle:
    """One actor: asked to load at creation; calls queue on the actor in order."""

    def __init__(self, actor_class: Any, job: WorkerJob, options: dict[str, Any]) -> None:
        self.ray = import_ray()
        self.started = time.perf_counter()
        self.actor = actor_class.options(**options).remote(job)
        self._load = self.actor.load.remote()
        self._calls: deque[Any] = deque()

    def loaded(self, timeout_s: float) -> Any:
        return self._get(self._load, timeout_s)

    def send(self, task: DecodeTask) -> None:
        self._calls.append(self.actor.run.remote(with_input_bytes(task)))

    def receive(self, timeout_s: float) -> Any:
        return self._get(self._calls.popleft(), timeout_s)

    def _get(self, ref: Any, timeout_s: float) -> Any:
        errors = self.ray.exceptions
        try:
            return self.ray.get(ref, timeout=timeout_s)
        except errors.GetTimeoutError:
            self.kill()
            return WorkerGone("timeout", f"no answer within {timeout_s:g} s; Ray actor killed")
        except (errors.NodeDiedError, errors.LocalRayletDiedError, errors.ObjectLostError) as exc:
            # the node or its raylet is gone: the machine's failure, not the decoder's
            return WorkerGone(INFRASTRUCTURE_ERROR, f"Ray node lost: {_first_line(exc)}")
        except (errors.RayActorError, errors.WorkerCrashedError) as exc:
            return WorkerGone("crashed", f"Ray worker died: {_first_line(exc)}")
        except errors.RayError as exc:
            return WorkerGone("error", f"Ray: {_first_line(exc)}")

    def close(self) -> None:
        self.kill()

    def kill(self) -> None:
        """Kill the actor and wait until Ray knows it is gone (its GPU memory with it)."""
        with contextlib.suppress(Exception):
            self.ray.kill(self.actor, no_restart=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                self.ray.get(self.actor.__ray_ready__.remote(), timeout=5)
            except self.ray.exceptions.GetTimeoutError:
                continue
            except Exception:
                return  # dead
            time.sleep(0.05)


CONNECT_TIMEOUT_S = 5.0


def reachable(address: str | None) -> None:
    """An address host:port (or ray://host:port) must answer a TCP connection within seconds:
    ray.init itself keeps retrying an address where nothing listens for minutes."""
    if not address or address == "auto" or address.startswith("local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ExecutorError(f"--address {address!r}: expected host:port, ray://host:port or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        why = "no answer" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise ExecutorError(f"--address {address}: nothing answers there ({why} within "
                            f"{CONNECT_TIMEOUT_S:g} s); start the cluster (`ray start --head`) or give its "
                            "address") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class RayExecutor:
    name = "ray"
    crash_retries = 1  # a killed Ray worker or a lost node: the unit is tried once more

    def __init__(self, address: str | None, device: str, threads: int | None) -> None:
        ray = import_ray()
        self.address = address
        self._started_here = not ray.is_initialized()
        if self._started_here:
            reachable(address)
            try:
                ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise ExecutorError(f"cannot start or join Ray (address {address!r}): {exc}") from None
        resources = ray.cluster_resources()
        gpu = device.startswith("cuda")
        cpus = threads or 1
        if gpu:
            count = int(resources.get("GPU", 0))
            if count == 0:
                self.shutdown()
                raise ExecutorError(f"the Ray cluster ({address or 'local'}) has no GPUs for {device!r}")
        else:
            count = max(1, int(resources.get("CPU", 1) // cpus))
        self.slots = [Slot(f"ray{i}", remote=True, device="cuda" if gpu else None) for i in range(count)]
        self.options = {"num_cpus": cpus, "num_gpus": 1 if gpu else 0, "max_restarts": 0,
                        "max_task_retries": 0}
        self.nodes = sum(1 for node in ray.nodes() if node.get("Alive"))

    def warm_up(self) -> float:
        """Ray starts each actor's process itself: no shared server to wait for."""
        return 0.0

    def run(self, units: Sequence[Unit], sink: Sink, policy: Policy) -> None:
        ray = import_ray()
        actor_class = ray.remote(RayWorker)
        try:
            run_slots(self.slots, units, lambda job, slot: RayHandle(actor_class, job, self.options),
                      sink, policy)
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        if self._started_here:
            import_ray().shutdown()
            self._started_here = False

    def describe(self) -> dict[str, Any]:
        return {"executor": self.name, "address": self.address or "local instance", "nodes": self.nodes,
                "slots": [{"label": s.label} for s in self.slots], "actor_options": self.options}

