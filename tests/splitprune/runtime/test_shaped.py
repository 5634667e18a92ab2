"""A real shaped link: a token bucket on loopback in a private network namespace, changed mid-run.

MobileNetV2 on the TX2 profile over 5g: the exact policy offloads fully above ~9.4 Mbit/s and cuts at
features_7_conv_2 between ~4.1 and ~9.4 Mbit/s. At 50 Mbit/s the device must offload fully; after
``tc qdisc change ... rate 6mbit`` it must move to the intermediate cut within 5 requests, its
measured transfers must agree with the shaped rates, and no request may be lost.
"""

import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

DRIVER = Path(__file__).parent / "shaped_driver.py"
TRIAL = "ip link set lo up mtu 1500 && tc qdisc add dev lo root tbf rate 50mbit burst 16kb latency 400ms"


def _shaping_unavailable():
    missing = [tool for tool in ("unshare", "tc", "ip") if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not found (apt-get install util-linux iproute2)"
    trial = subprocess.run(["unshare", "-rn", "sh", "-c", TRIAL], capture_output=True, text=True)
    if trial.returncode != 0:
        return f"cannot shape loopback in a private namespace: {trial.stderr.strip()[:200]}"
    return None


@pytest.mark.slow
def test_device_follows_a_rate_change_on_a_shaped_link(tmp_path):
    reason = _shaping_unavailable()
    if reason:
        pytest.skip(reason)
    out = tmp_path / "records.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["unshare", "-rn", sys.executable, str(DRIVER), str(out), str(tmp_path / "cache")],
                          capture_output=True, text=True, timeout=400, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    records, change, cuts = result["records"], result["change_at"], result["cuts"]
    assert [r["request_id"] for r in records] == list(range(len(records)))  # none lost, none twice
    assert not any(r["local_fallback"] for r in records)
    assert {r["cut"] for r in records[:change]} == {cuts["full_offload"]}
    kinds = [r["cut_kind"] for r in records]
    first_split = kinds.index("split")
    assert change < first_split <= change + 5
    assert set(kinds[first_split:]) == {"split"}  # no flapping back

    def measured(rows):
        return statistics.median(8 * r["sent_bytes"] / r["transfer_s"] for r in rows)

    assert 0.4 * 50e6 <= measured(records[1:change]) <= 1.5 * 50e6
    assert 0.6 * 6e6 <= measured(records[change:]) <= 1.5 * 6e6
    sent = {r["cut_kind"]: r["sent_bytes"] for r in records}
    assert sent["split"] < sent["full_offload"] / 2  # the cut sends a third of the uint8 frame's bytes
