"""Link and server profiles: shipped files load, every number has provenance, bad files fail."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from splitprune.config import shipped_names
from splitprune.errors import ConfigError
from splitprune.link import load_link, load_server

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("name", ["wifi", "lte", "5g", "ble"])
def test_shipped_links_load_with_provenance_for_every_number(name):
    link = load_link(name)
    assert set(link.number_keys()) <= set(link.provenance.values)
    assert link.provenance.sources
    assert link.uplink.nominal_rate_bps > 0


def test_shipped_profiles_are_listed():
    assert {"wifi", "lte", "5g", "ble"} <= set(shipped_names("links"))
    assert "gpu-server" in shipped_names("servers")


def test_energy_per_byte_follows_the_linear_power_model():
    link = load_link("lte")
    up = link.uplink
    for rate in (1e5, 6e6, 1e8):
        fig = link.figures(rate)
        power_w = up.alpha_w_per_bps * rate + up.beta_w
        assert fig.energy_per_byte_j == pytest.approx(power_w * 8 / rate)
        assert fig.latency_per_byte_s == pytest.approx(8 / rate)
    # linear in 1/rate: the midpoint in 1/rate gives the mean cost
    a, b = link.figures(1e6).energy_per_byte_j, link.figures(1e7).energy_per_byte_j
    mid = link.figures_at_inverse_rate((1e-6 + 1e-7) / 2).energy_per_byte_j
    assert mid == pytest.approx((a + b) / 2)


def test_shannon_rate():
    link = load_link("5g")
    s = link.uplink.shannon
    assert s is not None
    expected = s.efficiency * s.bandwidth_hz * math.log2(1 + 10 ** (s.snr_db / 10))
    assert link.figures().rate_bps == pytest.approx(expected)


def test_server_profile_loads():
    server = load_server("gpu-server")
    assert server.latency_s.layer_cost("conv", macs=10**9, mem_bytes=0, kernels=64) > 0


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
        (lambda t: t.replace("schema_version = 1", "schema_version = 2"), "schema_version"),
    ],
)
def test_bad_link_files_fail_with_one_line(tmp_path, edit, needle):
    with pytest.raises(ConfigError) as info:
        load_link(_write(tmp_path, edit(GOOD)))
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_unknown_link_name_lists_the_shipped_ones():
    with pytest.raises(ConfigError, match="wifi"):
        load_link("carrier-pigeon")
