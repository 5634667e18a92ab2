"""Link and server profiles: shipped files load, every number has provenance, bad files fail."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from splitprune.config import shipped_names
from splitprune.errors import ConfigError
from splitprune.link import load_link, load_server

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


LINKS = ["wifi", "lte", "5g", "5g-mmwave", "ble"]


@pytest.mark.parametrize("name", LINKS)
def test_shipped_links_load_with_provenance_for_every_number(name):
    link = load_link(name)
    assert set(link.number_keys()) <= set(link.provenance.values)
    assert "uplink.measured_rate_bps" in link.number_keys()
    assert link.provenance.sources
    assert link.uplink.nominal_rate_bps > 0
    assert link.in_measured_range(link.uplink.nominal_rate_bps)  # the default rate needs no warning


def test_shipped_profiles_are_listed():
    assert set(LINKS) <= set(shipped_names("links"))
    assert "gpu-server" in shipped_names("servers")


@pytest.mark.parametrize("name", LINKS)
def test_radio_power_stays_below_a_board_budget_at_every_rate(name):
    # the old Huang-2012 extrapolation charged 5.8 W (Wi-Fi) and 10 W (LTE) at 20 Mbit/s
    link = load_link(name)
    powers = [link.figures(float(r)).power_w for r in np.geomspace(1e3, 1e10, 50)]
    assert max(powers) <= link.uplink.cap_w + 1e-12 <= 6.0
    energy_per_bit = [link.figures(float(r)).energy_per_byte_j / 8 for r in np.geomspace(1e3, 1e10, 50)]
    assert all(b <= a * (1 + 1e-12) for a, b in zip(energy_per_bit, energy_per_bit[1:], strict=False))


def test_energy_per_byte_follows_the_capped_linear_power_model():
    link = load_link("lte")
    up = link.uplink
    low, high = up.measured_rate_bps
    for rate in (1e5, 6e6, 1e8):
        fig = link.figures(rate)
        power_w = up.base_power_w + up.power_w_per_bps * min(max(rate, low), high)
        assert fig.power_w == pytest.approx(power_w)
        assert fig.energy_per_byte_j == pytest.approx(power_w * 8 / rate)
        assert fig.latency_per_byte_s == pytest.approx(8 / rate)
        assert fig.in_measured_range == (low <= rate <= high)
    assert link.rate_breakpoints_bps() == (low, high)
    # linear in 1/rate between the breakpoints: the midpoint in 1/rate gives the mean cost
    a, b = link.figures(2e6).energy_per_byte_j, link.figures(2e7).energy_per_byte_j
    mid = link.figures_at_inverse_rate((1 / 2e6 + 1 / 2e7) / 2).energy_per_byte_j
    assert mid == pytest.approx((a + b) / 2)
    # ... and not across a breakpoint (the cap bends the line)
    c = link.figures(1e8).energy_per_byte_j
    across = link.figures_at_inverse_rate((1 / 2e6 + 1 / 1e8) / 2).energy_per_byte_j
    assert across != pytest.approx((a + c) / 2)
    # a piece's line extended to another rate
    extended = link.figures_at_inverse_rate(1 / 1e8, piece_at_bps=1e7).energy_per_byte_j
    assert extended == pytest.approx(8 * (up.power_w_per_bps + up.base_power_w / 1e8))


def test_shannon_rate(tmp_path):
    text = GOOD.replace("rate_bps = 0.7e6\n", "").replace(
        "[provenance]", "[uplink.shannon]\nbandwidth_hz = 1e6\nsnr_db = 3.0\n\n[provenance]"
    ).replace('"uplink.rate_bps" =', '"uplink.shannon.bandwidth_hz" = "test"\n"uplink.shannon.snr_db" =')
    link = load_link(_write(tmp_path, text))
    s = link.uplink.shannon
    assert s is not None
    assert link.figures().rate_bps == pytest.approx(1e6 * math.log2(1 + 10 ** 0.3))


def test_server_profile_loads():
    server = load_server("gpu-server")
    assert server.latency_s.latency_cost("conv", macs=10**9, mem_bytes=0, kernels=64) > 0


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "link.toml"
    path.write_text(text)
    return path


GOOD = (CONFIGS / "links" / "ble.toml").read_text()


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda t: t.replace("rtt_s = 0.03", "rtt_s = 0.03\nrtt_ms = 30"), "unknown key 'rtt_ms'"),
        (lambda t: t.replace('"rtt_s" = ', '"rtt" = '), "provenance.values has no entry for rtt_s"),
        (lambda t: t.replace("rate_bps = 0.7e6", "rate_bps = -1"), "uplink.rate_bps"),
        (lambda t: t.replace("rate_bps = 0.7e6", "rate_bps = 0.7e6\n"
                             "shannon = { bandwidth_hz = 1e6, snr_db = 3 }"), "exactly one"),
        (lambda t: t.replace("schema_version = 2", "schema_version = 1"), "schema_version"),
        (lambda t: t.replace("measured_rate_bps = [0.0, 0.7e6]", "measured_rate_bps = [1e6, 0.7e6]"),
         "measured_rate_bps"),
        (lambda t: t.replace("measured_rate_bps = [0.0, 0.7e6]\n", ""),
         "missing key 'uplink.measured_rate_bps'"),
    ],
)
def test_bad_link_files_fail_with_one_line(tmp_path, edit, needle):
    with pytest.raises(ConfigError) as info:
        load_link(_write(tmp_path, edit(GOOD)))
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_unknown_link_name_lists_the_shipped_ones():
    with pytest.raises(ConfigError, match="wifi"):
        load_link("carrier-pigeon")
