from __future__ import annotations

import sys
import time
import types
from importlib.util import find_spec

import pynvml
import pytest
from measure_fakes import ScriptedClock, total_energy_j, total_power_w

from measure import JtopSensor, NvmlSensor, SensorError


def _wait_for_samples(clock: ScriptedClock, count: int, timeout_s: float = 20.0) -> None:
    """Wait until the sampling thread has taken ``count`` samples (a loaded machine is slow)."""
    deadline = time.monotonic() + timeout_s
    while len(clock.calls) < count and time.monotonic() < deadline:
        time.sleep(0.005)


class FakeJtop:
    """Shaped like a started ``jtop.jtop`` client (jetson-stats 4) on an Orin NX: ``power`` and ``close``.

    jetson-stats takes ``VDD_IN`` out of the rail list and reports it as ``tot`` with its name.
    """

    def __init__(self) -> None:
        self.t_s = 0.0
        self.closed = False

    def set_time(self, t_s: float) -> None:
        self.t_s = t_s

    @property
    def power(self) -> dict:
        total_mw = total_power_w(self.t_s) * 1e3
        return {
            "rail": {
                "VDD_CPU_GPU_CV": {"online": True, "power": 2000, "avg": 123456},
                "VDD_SOC": {"online": True, "power": 500, "avg": 1},
            },
            # avg is a running (new + old) / 2: wildly off here, so using it would fail the test
            "tot": {"power": total_mw, "avg": 10 * total_mw, "name": "VDD_IN"},
        }


class FakeAgxOrinJtop(FakeJtop):
    """jetson-stats on an AGX Orin: no input rail, so its ``tot`` is the unnamed sum of every rail and
    power supply it found (a USB-C source here), which is not the module's power."""

    @property
    def power(self) -> dict:
        mw = total_power_w(self.t_s) * 1e3
        rails = {"VDD_GPU_SOC": 0.4 * mw, "VDD_CPU_CV": 0.2 * mw, "VIN_SYS_5V0": 0.3 * mw,
                 "VDDQ_VDD2_1V8AO": 0.1 * mw, "ucsi-source-psy-USBC000:001": 30000.0}  # fmt: skip
        return {
            "rail": {k: {"online": True, "power": v, "avg": 0} for k, v in rails.items()},
            "tot": {"power": sum(rails.values()), "avg": 0},
        }

    def close(self) -> None:
        self.closed = True


def test_jtop_integrates_instantaneous_power_not_avg():
    client = FakeJtop()
    clock = ScriptedClock([client.set_time])
    sensor = JtopSensor(client=client, interval_s=0.002, clock=clock)
    assert sensor.rails() == ["VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"]
    first = len(clock.calls)  # begin_window's own sample is the window's first
    sensor.begin_window()
    _wait_for_samples(clock, first + 40)
    m = sensor.end_window()
    t0, t1 = clock.calls[first], clock.calls[-1]
    assert m.energy_j == pytest.approx(total_energy_j(t0, t1), rel=0.01)
    assert m.rail_energy_j["VDD_CPU_GPU_CV"] == pytest.approx(2.0 * (t1 - t0))
    assert m.total_rails == ("VDD_IN",)
    sensor.close()
    assert not client.closed  # a client passed in belongs to the caller


def test_jtop_on_an_agx_orin_sums_the_module_rails_not_jtops_total():
    client = FakeAgxOrinJtop()
    clock = ScriptedClock([client.set_time])
    sensor = JtopSensor(client=client, interval_s=0.002, clock=clock)
    total = ("VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0", "VDDQ_VDD2_1V8AO")
    assert sensor.rails() == list(total) and sensor.layout.name == "Jetson AGX Orin"
    first = len(clock.calls)
    sensor.begin_window()
    _wait_for_samples(clock, first + 40)
    m = sensor.end_window()
    t0, t1 = clock.calls[first], clock.calls[-1]
    assert m.total_rails == total
    assert m.energy_j == pytest.approx(total_energy_j(t0, t1), rel=0.01)  # 0.4 + 0.2 + 0.3 + 0.1 of it
    assert sensor.describe()["sensor_total_rails"] == ",".join(total)
    sensor.close()


def test_jtop_missing_package_fails_cleanly(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "jtop", None)  # import jtop -> ImportError
    with pytest.raises(SensorError, match="jetson-stats is not installed") as info:
        JtopSensor()
    assert "\n" not in str(info.value)


@pytest.mark.skipif(find_spec("jtop") is not None, reason="jetson-stats is installed here")
def test_real_jtop_import_fails_cleanly_off_board():
    with pytest.raises(SensorError, match="pip install jetson-stats"):
        JtopSensor()


def test_jtop_service_not_running(monkeypatch: pytest.MonkeyPatch):
    class Client:
        def __init__(self, interval: float) -> None:
            self.interval = interval

        def start(self) -> None:
            raise RuntimeError("The jtop.service is not active")

    monkeypatch.setitem(sys.modules, "jtop", types.SimpleNamespace(jtop=Client))
    with pytest.raises(SensorError, match="systemctl restart jtop.service"):
        JtopSensor()


@pytest.fixture
def nvml(mocker):
    mocker.patch("pynvml.nvmlInit", autospec=True)
    mocker.patch("pynvml.nvmlShutdown", autospec=True)
    mocker.patch("pynvml.nvmlDeviceGetHandleByIndex", autospec=True, return_value="gpu-handle")
    return mocker


def test_nvml_takes_energy_between_counter_ticks(nvml):
    """The counter ticks every 20 ms; energy and time are taken between the first and last tick seen."""
    state = {"t": 0.0}
    clock = ScriptedClock([lambda t: state.update(t=t)])
    nvml.patch("pynvml.nvmlDeviceGetPowerUsage", autospec=True, return_value=50_000)
    # 80 W while the window runs, counted in mJ at each 20 ms tick (NVML's counter only moves at ticks)
    nvml.patch(
        "pynvml.nvmlDeviceGetTotalEnergyConsumption",
        autospec=True,
        side_effect=lambda handle: int(80.0 * 1e3 * (state["t"] // 0.02) * 0.02),
    )
    sensor = NvmlSensor(index=0, interval_s=0.002, clock=clock)
    assert sensor.uses_energy_counter and sensor.sampler_kind == "thread"  # an injected clock stays here
    first = len(clock.calls)
    sensor.begin_window()
    _wait_for_samples(clock, first + 200)
    m = sensor.end_window()
    sensor.close()
    assert m.ticks >= 5
    assert m.mean_power_w == pytest.approx(80.0, rel=1e-3)  # not the 50 W of the power readings
    assert m.duration_s == pytest.approx(0.02 * (m.ticks - 1), abs=2e-3)
    assert pynvml.nvmlShutdown.call_count == 1
    assert sensor.describe()["sensor_energy_source"] == "total-energy counter"
    assert sensor.describe()["sensor_has_energy_counter"] == "true"


def test_nvml_samples_power_without_a_counter(nvml):
    state = {"t": 0.0}
    clock = ScriptedClock([lambda t: state.update(t=t)])
    nvml.patch(
        "pynvml.nvmlDeviceGetPowerUsage",
        autospec=True,
        side_effect=lambda handle: int(total_power_w(state["t"]) * 1e3),
    )
    nvml.patch(
        "pynvml.nvmlDeviceGetTotalEnergyConsumption",
        autospec=True,
        side_effect=pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED),
    )
    sensor = NvmlSensor(interval_s=0.002, clock=clock)
    assert not sensor.uses_energy_counter
    first = len(clock.calls)  # begin_window's own sample is the window's first
    sensor.begin_window()
    _wait_for_samples(clock, first + 40)
    m = sensor.end_window()
    assert m.energy_j == pytest.approx(total_energy_j(clock.calls[first], clock.calls[-1]), rel=0.01)


def test_nvml_without_a_gpu_is_a_one_line_error(mocker):
    mocker.patch(
        "pynvml.nvmlInit", autospec=True, side_effect=pynvml.NVMLError(pynvml.NVML_ERROR_DRIVER_NOT_LOADED)
    )
    with pytest.raises(SensorError, match="NVML cannot read GPU 0"):
        NvmlSensor()


def test_nvml_missing_package(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    with pytest.raises(SensorError, match="pip install nvidia-ml-py"):
        NvmlSensor()
