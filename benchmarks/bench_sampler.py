"""Achieved power-sampling rate while the main thread holds the GIL: thread sampler vs sampling process.

A fake INA3221 sysfs tree (constant 7 W) is read at 100 and 500 samples a second while the main thread
runs a tight pure-Python loop for 2 s (as a sweep does when it launches small kernels back to back).
Prints one JSON document. Run: .venv/bin/python benchmarks/bench_sampler.py
"""

import json
import sys
import tempfile
import time
from pathlib import Path

from measure import Ina3221Sensor

SPIN_S = 2.0


def _fake_sysfs(root: Path) -> None:
    hwmon = root / "bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3"
    hwmon.mkdir(parents=True)
    (hwmon / "name").write_text("ina3221\n")
    (hwmon / "in1_label").write_text("VDD_IN\n")
    (hwmon / "in1_input").write_text("5000\n")
    (hwmon / "curr1_input").write_text("1400\n")


def rate(root: Path, sampler: str, interval_s: float) -> dict:
    with Ina3221Sensor(sysfs_root=root, interval_s=interval_s, sampler=sampler) as sensor:
        sensor.begin_window()  # start the process (or thread) outside the timed window
        sensor.end_window()
        sensor.begin_window()
        start_s = sensor.now()
        deadline_s = time.perf_counter() + SPIN_S
        while time.perf_counter() < deadline_s:
            pass
        m = sensor.end_window(span=(start_s, sensor.now()))
    wanted_hz = 1 / interval_s
    return {
        "sampler": sampler,
        "requested_hz": wanted_hz,
        "achieved_hz": round(m.sample_rate_hz, 1),
        "fraction": round(m.sample_rate_hz / wanted_hz, 3),
        "mean_power_w": round(m.mean_power_w or 0.0, 3),
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "sys"
        _fake_sysfs(root)
        rows = [rate(root, s, i) for i in (0.01, 0.002) for s in ("thread", "process")]
    json.dump({"spin_s": SPIN_S, "python": sys.version.split()[0], "rows": rows}, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
