"""A stand-in for the `pynvml` module (nvidia-ml-py) with a scripted total-energy counter.

The counter follows a fake clock: the device draws `power_w` (idle) or `busy_w` (while a
decode runs, see `FakeClock.busy`), and the counter moves in steps every `update_s`, as NVML's
does, so reading it between updates returns the value of the last update.
"""

from __future__ import annotations

import math
import types
from dataclasses import dataclass, field
from typing import Any


class FakeClock:
    """Seconds that pass only when told: a decode of 87 ms is `clock.run(0.087)`."""

    def __init__(self, start: float = 100.0) -> None:
        self.now = start
        self.energy_j = 0.0  # true energy drawn so far
        self.power_w = 60.0  # what the device draws when nothing runs
        self.history = [(start, 0.0)]  # (time, true energy): power is constant in between

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float, power_w: float | None = None) -> None:
        self.energy_j += (self.power_w if power_w is None else power_w) * seconds
        self.now += seconds
        self.history.append((self.now, self.energy_j))

    def energy_at(self, when: float) -> float:
        """The true energy drawn by time `when` (interpolated within a constant-power stretch)."""
        for (t0, e0), (t1, e1) in zip(self.history[:-1], self.history[1:], strict=True):
            if t0 <= when <= t1:
                return e0 + (e1 - e0) * (when - t0) / (t1 - t0) if t1 > t0 else e1
        return self.history[0][1] if when < self.history[0][0] else self.energy_j

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)


@dataclass
class Gpu:
    uuid: str
    name: str = "NVIDIA H100 80GB HBM3"
    supports_energy: bool = True


class NVMLError(Exception):
    def __init__(self, text: str = "Unknown Error") -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return self.text


class NVMLError_NotSupported(NVMLError):  # pynvml's name
    def __init__(self) -> None:
        super().__init__("Not Supported")


@dataclass
class Script:
    clock: FakeClock
    update_s: float = 0.020
    gpus: list[Gpu] = field(default_factory=lambda: [Gpu("GPU-aaaa"), Gpu("GPU-bbbb")])
    init_error: str | None = None
    inits: int = 0
    energy_reads: int = 0

    def counter_mj(self) -> int:
        """The true energy as of the last counter update (the counter lags by up to update_s)."""
        last_update = math.floor(round(self.clock.now / self.update_s, 9)) * self.update_s
        return int(self.clock.energy_at(last_update) * 1000)


def make_module(script: Script) -> types.ModuleType:
    """A module with the pynvml functions decoderbench calls, answering from `script`."""
    module = types.ModuleType("pynvml")
    module.NVMLError = NVMLError  # type: ignore[attr-defined]
    module.NVMLError_NotSupported = NVMLError_NotSupported  # type: ignore[attr-defined]
    module.NVML_CLOCK_SM, module.NVML_CLOCK_MEM, module.NVML_TEMPERATURE_GPU = 1, 2, 0  # type: ignore[attr-defined]

    def init() -> None:
        if script.init_error:
            raise NVMLError(script.init_error)
        script.inits += 1

    def by_index(index: int) -> Gpu:
        if not 0 <= index < len(script.gpus):
            raise NVMLError("Invalid Argument")
        return script.gpus[index]

    def by_uuid(uuid: Any) -> Gpu:
        text = uuid.decode() if isinstance(uuid, bytes) else uuid
        for gpu in script.gpus:
            if gpu.uuid == text:
                return gpu
        raise NVMLError("Not Found")

    def energy(gpu: Gpu) -> int:
        if not gpu.supports_energy:
            raise NVMLError_NotSupported()
        script.energy_reads += 1
        return script.counter_mj()

    module.nvmlInit = init  # type: ignore[attr-defined]
    module.nvmlShutdown = lambda: None  # type: ignore[attr-defined]
    module.nvmlDeviceGetHandleByIndex = by_index  # type: ignore[attr-defined]
    module.nvmlDeviceGetHandleByUUID = by_uuid  # type: ignore[attr-defined]
    module.nvmlDeviceGetTotalEnergyConsumption = energy  # type: ignore[attr-defined]
    module.nvmlDeviceGetUUID = lambda gpu: gpu.uuid  # type: ignore[attr-defined]
    module.nvmlDeviceGetName = lambda gpu: gpu.name  # type: ignore[attr-defined]
    module.nvmlDeviceGetIndex = lambda gpu: script.gpus.index(gpu)  # type: ignore[attr-defined]
    module.nvmlDeviceGetEnforcedPowerLimit = lambda gpu: 700_000  # type: ignore[attr-defined]
    module.nvmlDeviceGetPowerUsage = lambda gpu: int(script.clock.power_w * 1000)  # type: ignore[attr-defined]
    module.nvmlDeviceGetClockInfo = lambda gpu, kind: 1980 if kind == 1 else 2619  # type: ignore[attr-defined]
    module.nvmlDeviceGetMaxClockInfo = lambda gpu, kind: 1980  # type: ignore[attr-defined]
    module.nvmlDeviceGetTemperature = lambda gpu, kind: 41  # type: ignore[attr-defined]
    module.nvmlDeviceGetUtilizationRates = lambda gpu: types.SimpleNamespace(gpu=0)  # type: ignore[attr-defined]
    return module
