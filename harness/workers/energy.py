"""Energy counters: GPU through NVML's cumulative counter, CPU through Linux RAPL; idle power.

The worker's meter for its device (`meter_for`) and the GPUs' idle power and state around a run's
decode phase; nothing is guessed: a counter that cannot be read says why
(docs/energy-and-price.md). The block of timed calls is measured by harness/workers/meter.py.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import DecoderbenchError
from harness.workers.meter import (
    DEFAULT_MIN_BLOCK_S,
    OK,
    BlockMeter,
    Clock,
    Counter,
    EnergyMeter,
    Period,
    Unmeasured,
    probe_period,
)

IDLE_SECONDS = 3.0  # how long each GPU is watched idle before the first decoder


NVML_INSTALL = "nvidia-ml-py is not installed (pip install 'decoderbench[energy]')"


POWERCAP_ROOT = Path("/sys/class/powercap")  # DECODERBENCH_POWERCAP_ROOT replaces it (e.g. tests)


_RAPL_PACKAGE = re.compile(r"intel-rapl:\d+")


class EnergyUnavailable(DecoderbenchError):
    """A counter that cannot be read here; str() is the reason a reader is shown."""


def _pynvml() -> Any:
    try:
        import pynvml
    except ImportError:
        raise EnergyUnavailable(NVML_INSTALL) from None
    return pynvml


def nvml_start() -> Any:
    """pynvml, initialised; EnergyUnavailable with the reason where NVML cannot start."""
    pynvml = _pynvml()
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        raise EnergyUnavailable(f"NVML cannot start ({exc}): no NVIDIA driver on this machine?") from None
    return pynvml


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class NvmlCounter:
    """One GPU's total-energy counter (NVML must be initialised)."""

    kind, source = "gpu", "nvml_total_energy"

    def __init__(self, pynvml: Any, handle: Any, mapped_by: str) -> None:
        self.nvml, self.handle, self.mapped_by = pynvml, handle, mapped_by
        try:
            self.read_mj()
        except pynvml.NVMLError as exc:
            raise EnergyUnavailable(f"GPU {self._name()} has no readable total-energy counter ({exc}); "
                                    "NVML offers it on Volta and newer GPUs") from None

    def read_mj(self) -> float:
        return float(self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle))

    def _name(self) -> str:
        return self._query(lambda: _text(self.nvml.nvmlDeviceGetName(self.handle))) or "?"

    def _query(self, read: Callable[[], Any]) -> Any:
        try:
            return read()
        except self.nvml.NVMLError:
            return None

    def identity(self) -> dict[str, Any]:
        nvml, handle = self.nvml, self.handle
        return {"gpu_uuid": self._query(lambda: _text(nvml.nvmlDeviceGetUUID(handle))),
                "gpu_name": self._query(lambda: _text(nvml.nvmlDeviceGetName(handle))),
                "nvml_index": self._query(lambda: int(nvml.nvmlDeviceGetIndex(handle))),
                "mapped_by": self.mapped_by}

    def state(self) -> dict[str, Any]:
        """Power limit (W), SM and memory clocks (MHz), temperature (°C), power draw (W), now."""
        nvml, handle = self.nvml, self.handle

        def watts(read: Callable[[], Any]) -> float | None:
            value = self._query(read)
            return None if value is None else value / 1000.0

        return {
            "power_limit_w": watts(lambda: nvml.nvmlDeviceGetEnforcedPowerLimit(handle)),
            "power_draw_w": watts(lambda: nvml.nvmlDeviceGetPowerUsage(handle)),
            "sm_clock_mhz": self._query(lambda: nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM)),
            "memory_clock_mhz": self._query(
                lambda: nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_MEM)),
            "max_sm_clock_mhz": self._query(
                lambda: nvml.nvmlDeviceGetMaxClockInfo(handle, nvml.NVML_CLOCK_SM)),
            "temperature_c": self._query(
                lambda: nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)),
            "utilization_percent": self._query(lambda: nvml.nvmlDeviceGetUtilizationRates(handle).gpu),
        }


def nvml_handle(pynvml: Any, visible_entry: str | None, logical: int, uuid: str | None) -> tuple[Any, str]:
    """The NVML handle of a CUDA device: by its UUID (exact, whatever the device order), else
    through its CUDA_VISIBLE_DEVICES entry (an index or a UUID), else by torch's own index."""
    attempts: list[tuple[str, Callable[[], Any]]] = []
    if uuid:
        full = uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}"
        attempts.append(("uuid", lambda: pynvml.nvmlDeviceGetHandleByUUID(full)))
    if visible_entry is not None:
        if visible_entry.isdigit():
            attempts.append(("cuda_visible_devices",
                             lambda: pynvml.nvmlDeviceGetHandleByIndex(int(visible_entry))))
        else:
            attempts.append(("cuda_visible_devices", lambda: pynvml.nvmlDeviceGetHandleByUUID(visible_entry)))
    else:
        attempts.append(("index", lambda: pynvml.nvmlDeviceGetHandleByIndex(logical)))
    problems = []
    for how, get in attempts:
        try:
            return get(), how
        except pynvml.NVMLError as exc:
            problems.append(f"by {how}: {exc}")
    raise EnergyUnavailable(f"NVML does not know this process's GPU cuda:{logical} ({'; '.join(problems)})")


def gpu_counter(device: Any) -> NvmlCounter:
    """The counter of the GPU a torch CUDA device is (raises EnergyUnavailable with the reason)."""
    import torch

    from harness.workers.process import visible_devices

    pynvml = nvml_start()
    logical = device.index if device.index is not None else torch.cuda.current_device()
    try:
        uuid = str(torch.cuda.get_device_properties(logical).uuid)
    except (AttributeError, RuntimeError):
        uuid = None
    visible = visible_devices()
    entry = visible[logical] if visible is not None and logical < len(visible) else None
    handle, how = nvml_handle(pynvml, entry, logical, uuid)
    return NvmlCounter(pynvml, handle, how)


@dataclass
class _Domain:
    path: Path
    name: str
    max_range_uj: int
    last_uj: int
    total_uj: int = 0


class RaplCounter:
    """The sum of the CPU package domains' energy, wraparound handled per domain."""

    kind, source = "cpu", "linux_powercap_rapl"

    def __init__(self, root: Path | None = None) -> None:
        root = root or Path(os.environ.get("DECODERBENCH_POWERCAP_ROOT") or POWERCAP_ROOT)
        if not root.is_dir():
            raise EnergyUnavailable(f"Linux powercap/RAPL is not available here (no {root})")
        zones = sorted(p for p in root.iterdir() if _RAPL_PACKAGE.fullmatch(p.name))
        if not zones:
            raise EnergyUnavailable(f"no RAPL package domain under {root} (no intel-rapl:N)")
        self.domains: list[_Domain] = []
        for zone in zones:
            name = _read_text(zone / "name", zone.name)
            if name.startswith("psys"):
                continue  # the whole platform: it contains the packages
            energy = _read_int(zone / "energy_uj")
            self.domains.append(_Domain(zone, name, _read_int(zone / "max_energy_range_uj"), energy))
        if not self.domains:
            raise EnergyUnavailable(f"no RAPL package domain under {root} (only psys)")

    def read_mj(self) -> float:
        for domain in self.domains:
            now = _read_int(domain.path / "energy_uj")
            step = now - domain.last_uj
            if step < 0:  # the counter wrapped at max_energy_range_uj
                step += domain.max_range_uj
            domain.total_uj += step
            domain.last_uj = now
        return sum(d.total_uj for d in self.domains) / 1000.0

    def identity(self) -> dict[str, Any]:
        return {"domains": [d.name for d in self.domains], "zones": [d.path.name for d in self.domains]}

    def state(self) -> dict[str, Any]:
        return {}


def _read_text(path: Path, default: str) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return default


def _read_int(path: Path) -> int:
    try:
        return int(path.read_text().strip())
    except PermissionError:
        raise EnergyUnavailable(f"{path} is not readable by this user (permission denied; since Linux "
                                "5.10 only root may read RAPL energy)") from None
    except (OSError, ValueError) as exc:
        raise EnergyUnavailable(f"cannot read {path}: {exc}") from None


def cpu_counter() -> RaplCounter:
    if not os.uname().sysname == "Linux":
        raise EnergyUnavailable("CPU energy is read from Linux powercap/RAPL; this is not Linux")
    return RaplCounter()


_counters: dict[str, tuple[Counter, Period] | str] = {}  # per worker: kind → counter and period, or why not


def _cached(kind: str, open_counter: Callable[[], Counter]) -> tuple[Counter, Period] | str:
    if kind not in _counters:
        try:
            counter = open_counter()
            _counters[kind] = (counter, probe_period(counter))
        except EnergyUnavailable as exc:
            _counters[kind] = str(exc)
        except Exception as exc:  # a binding or driver that misbehaves costs the figure, not the case
            _counters[kind] = f"the {kind} energy counter failed: {type(exc).__name__}: {exc}"
    return _counters[kind]


def meter_for(device: Any, min_block_s: float = DEFAULT_MIN_BLOCK_S) -> EnergyMeter:
    """The meters of a worker's timed block on `device`: the GPU's and the CPU packages' on CUDA,
    the CPU packages' on the CPU. Counters are opened (and their update interval watched) once
    per worker process."""
    kinds: dict[str, Callable[[], Counter]] = {"cpu": cpu_counter}
    sync: Callable[[], None] = lambda: None  # noqa: E731
    if device.type == "cuda":
        import torch

        kinds = {"gpu": lambda: gpu_counter(device), **kinds}
        sync = lambda: torch.cuda.synchronize(device)  # noqa: E731
    meters: dict[str, BlockMeter | Unmeasured] = {}
    for kind, open_counter in kinds.items():
        opened = _cached(kind, open_counter)
        meters[kind] = Unmeasured(opened) if isinstance(opened, str) else BlockMeter(*opened, min_block_s)
    return EnergyMeter(meters, sync)


def idle_power(counters: dict[str, Counter], seconds: float = IDLE_SECONDS,
               sleep: Callable[[float], None] = time.sleep, clock: Clock = time.perf_counter
               ) -> dict[str, dict[str, Any]]:
    """Mean power of each counter's device over `seconds` of nothing (all watched at once)."""
    start = {key: (clock(), counter.read_mj()) for key, counter in counters.items()}
    sleep(seconds)
    found = {}
    for key, counter in counters.items():
        t0, e0 = start[key]
        energy, elapsed = counter.read_mj() - e0, clock() - t0
        found[key] = {"status": OK, "source": counter.source, **counter.identity(), "seconds": elapsed,
                      "energy_j": energy / 1000.0, "power_w": energy / 1000.0 / elapsed,
                      "state": counter.state()}
    return found


def run_gpus(entries: Sequence[str]) -> tuple[dict[str, Counter], str | None]:
    """NVML counters of the GPUs a run will use (CUDA_VISIBLE_DEVICES-style entries: physical
    indices or UUIDs), keyed by UUID; or no counters and the reason."""
    try:
        pynvml = nvml_start()
    except EnergyUnavailable as exc:
        return {}, str(exc)
    counters: dict[str, Counter] = {}
    problems = []
    for entry in entries:
        try:
            handle, how = nvml_handle(pynvml, entry, int(entry) if entry.isdigit() else 0, None)
            counter = NvmlCounter(pynvml, handle, how)
        except EnergyUnavailable as exc:
            problems.append(f"GPU {entry}: {exc}")
            continue
        counters[counter.identity()["gpu_uuid"] or entry] = counter
    return counters, "; ".join(problems) or None


def gpu_run_facts(entries: Sequence[str], measure_idle: bool, seconds: float = IDLE_SECONDS,
                  **clock: Any) -> tuple[dict[str, Any], Callable[[], dict[str, Any]]]:
    """What the runner records of the run's GPUs before the first decoder: each GPU's state
    (power limit, clocks, temperature) and, with `measure_idle`, its idle power; plus a function
    that reads their state again at the end. Keyed by GPU UUID; {"reason"} where NVML cannot.
    `clock`: `sleep` and `clock` for idle_power (tests)."""
    counters, problem = run_gpus(entries)
    facts: dict[str, Any] = {"gpus": entries}
    if problem:
        facts["reason"] = problem
    if not counters:
        return facts, lambda: {}

    def states() -> dict[str, Any]:
        return {key: {**counter.identity(), **counter.state()} for key, counter in counters.items()}

    facts["state_start"] = states()
    if measure_idle:
        facts["idle"] = idle_power(counters, seconds, **clock)
    return facts, states
