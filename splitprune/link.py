"""Link and server profiles for split computing.

A link profile (``configs/links/*.toml``, schema 2) describes the device's uplink: its rate in bit/s
(given, or computed from a Shannon form ``bandwidth_hz * log2(1 + SNR) * efficiency``), the radio's
power while sending, the round-trip time, an optional per-message overhead and an optional downlink
for the result. Every number carries a ``provenance.values`` entry.

Radio power is what the radio adds **above device idle** while sending (the board's idle power during
the transfer is not charged, as it is not while waiting for the server) and follows a linear model
that holds only on the rates it was measured on, ``measured_rate_bps = [low, high]``::

    P(r) = base_power_w + power_w_per_bps * clip(r, low, high)

i.e. ``min(P0 + k r, P_cap)`` with ``P_cap = P0 + k high`` above the range, and the power measured at
``low`` below it: the fit is never extrapolated. Sending ``b`` bytes at rate ``r`` takes ``8 b / r``
seconds and costs ``P(r) * 8 b / r`` joules. In ``lam = 1 / r`` the energy per byte is
``8 * (a + b * lam)`` with ``(a, b) = (k, P0)`` inside the range and ``(0, P(low))``, ``(0, P_cap)``
outside: piecewise linear in ``1 / r`` with breakpoints at the range edges
(:meth:`LinkProfile.rate_breakpoints_bps`), which the exact bandwidth policy relies on.
:class:`LinkFigures` holds the per-byte figures at one rate.

A server profile (``configs/servers/*.toml``) gives the server's per-layer latency and energy with the
board's :class:`~splitprune.board.CostModel` structure, so end-to-end latency is defined.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from .board import SCHEMA_VERSIONS, CostModel, Provenance, cost_table_keys
from .config import StrictModel, check_schema_and_provenance, load_toml_model, resolve_profile

__all__ = [
    "LINK_SCHEMA_VERSION",
    "LinkFigures",
    "LinkProfile",
    "RadioPower",
    "ServerProfile",
    "load_link",
    "load_server",
]

LINK_SCHEMA_VERSION = 2  # 2: measured_rate_bps range, base_power_w/power_w_per_bps above device idle


class LinkInfo(StrictModel):
    """What the link is: a human name and the technology (``wifi``, ``lte``, ``5g``, ``ble`` ...)."""

    name: str
    technology: str


class Shannon(StrictModel):
    """Shannon-form rate: ``efficiency * bandwidth_hz * log2(1 + 10 ** (snr_db / 10))`` bit/s."""

    bandwidth_hz: float = Field(gt=0)
    snr_db: float
    efficiency: float = Field(default=1.0, gt=0, le=1)

    @property
    def rate_bps(self) -> float:
        """The rate this form gives, in bit/s."""
        return self.efficiency * self.bandwidth_hz * math.log2(1.0 + 10.0 ** (self.snr_db / 10.0))


class RadioPower(StrictModel):
    """Radio power above device idle while sending (or receiving) at rate ``r``, W.

    Attributes:
        base_power_w: Power at zero rate inside the measured range (the fit's intercept), W.
        power_w_per_bps: Slope of the power in the rate, W per bit/s.
        measured_rate_bps: ``[low, high]``: the rates the model was measured on, bit/s. Outside it
            the power is held at the range edge (``P(low)`` below, ``P_cap = P(high)`` above).
    """

    base_power_w: float = Field(ge=0)
    power_w_per_bps: float = Field(default=0.0, ge=0)
    measured_rate_bps: tuple[float, float]

    @model_validator(mode="after")
    def _range(self) -> RadioPower:
        low, high = self.measured_rate_bps
        if not (0 <= low < high and math.isfinite(high)):
            raise ValueError("measured_rate_bps must be [low, high] with 0 <= low < high, finite")
        return self

    @property
    def cap_w(self) -> float:
        """Power held above the measured range, W."""
        return self.power_w(self.measured_rate_bps[1])

    def power_w(self, rate_bps: float) -> float:
        """Radio power above idle at ``rate_bps``, W (held at the range edges outside the range)."""
        low, high = self.measured_rate_bps
        return self.base_power_w + self.power_w_per_bps * min(max(rate_bps, low), high)

    def in_range(self, rate_bps: float) -> bool:
        """Whether ``rate_bps`` lies in the measured range (edges included, 1e-9 relative slack)."""
        low, high = self.measured_rate_bps
        return low * (1 - 1e-9) <= rate_bps <= high * (1 + 1e-9)

    def energy_line(self, rate_bps: float) -> tuple[float, float]:
        """``(a, b)`` with energy per bit ``a + b / r`` on the model piece that holds ``rate_bps``.

        ``a`` is in J per bit, ``b`` in W; the line is exact for every rate of that piece.
        """
        low, high = self.measured_rate_bps
        if rate_bps < low:
            return 0.0, self.power_w(low)
        if rate_bps > high:
            return 0.0, self.cap_w
        return self.power_w_per_bps, self.base_power_w


class Uplink(RadioPower):
    """Uplink rate (give ``rate_bps`` or a ``shannon`` table, not both) and its radio power model.

    Attributes:
        rate_bps: Sustained application-level uplink rate in bit/s.
        shannon: Alternative to ``rate_bps``.
    """

    rate_bps: float | None = Field(default=None, gt=0)
    shannon: Shannon | None = None

    @model_validator(mode="after")
    def _one_rate(self) -> Uplink:
        if (self.rate_bps is None) == (self.shannon is None):
            raise ValueError("give exactly one of uplink.rate_bps and uplink.shannon")
        return self

    @property
    def nominal_rate_bps(self) -> float:
        """The profile's uplink rate in bit/s."""
        return self.rate_bps if self.rate_bps is not None else self.shannon.rate_bps  # type: ignore[union-attr]


class Downlink(RadioPower):
    """Downlink used only when the result is sent back (``SplitOptions.downlink``), at ``rate_bps``."""

    rate_bps: float = Field(gt=0)


class LinkProfile(StrictModel):
    """A validated link profile (see the module docstring)."""

    schema_version: int
    link: LinkInfo
    uplink: Uplink
    rtt_s: float = Field(ge=0)
    overhead_bytes_per_message: int = Field(default=0, ge=0)
    energy_per_message_j: float = Field(default=0.0, ge=0)
    downlink: Downlink | None = None
    provenance: Provenance

    @model_validator(mode="after")
    def _check(self) -> LinkProfile:
        check_schema_and_provenance(
            self.schema_version, self.number_keys(), self.provenance.values, supported=LINK_SCHEMA_VERSION
        )
        return self

    def number_keys(self) -> list[str]:
        """Dotted names of every number set in this profile, e.g. ``uplink.base_power_w``."""
        keys = []
        for table in ("uplink", "downlink"):
            section = getattr(self, table)
            if section is None:
                continue
            for key in section.model_fields_set - {"shannon"}:
                keys.append(f"{table}.{key}")
        if self.uplink.shannon is not None:
            keys += [f"uplink.shannon.{k}" for k in sorted(self.uplink.shannon.model_fields_set)]
        keys += ["rtt_s"]
        keys += [k for k in ("overhead_bytes_per_message", "energy_per_message_j")
                 if k in self.model_fields_set]
        return sorted(keys)

    @property
    def name(self) -> str:
        """Human name of the link."""
        return self.link.name

    def rate_breakpoints_bps(self) -> tuple[float, ...]:
        """Rates where the per-byte costs change slope in ``1 / rate``: the measured range's edges."""
        low, high = self.uplink.measured_rate_bps
        return tuple(r for r in (low, high) if r > 0)

    def in_measured_range(self, rate_bps: float) -> bool:
        """Whether the uplink power model was measured at ``rate_bps``."""
        return self.uplink.in_range(rate_bps)

    def figures(self, rate_bps: float | None = None) -> LinkFigures:
        """Per-byte costs at ``rate_bps`` (default: the profile's uplink rate)."""
        rate = self.uplink.nominal_rate_bps if rate_bps is None else float(rate_bps)
        if not rate > 0 or math.isinf(rate):
            raise ValueError(f"rate_bps must be positive and finite, got {rate_bps}")
        return self.figures_at_inverse_rate(1.0 / rate)

    def figures_at_inverse_rate(
        self, inv_rate_s_per_bit: float, *, piece_at_bps: float | None = None
    ) -> LinkFigures:
        """Per-byte costs at ``lam = 1 / rate``; ``0`` means an infinitely fast link.

        With ``piece_at_bps`` the costs follow the power-model piece that holds that rate, extended
        linearly in ``lam`` (exact for every rate of that piece; used to get slopes in ``1 / rate``).
        """
        lam = inv_rate_s_per_bit
        rate = math.inf if lam == 0 else 1.0 / lam
        up = self.uplink
        a, b = up.energy_line(rate if piece_at_bps is None else piece_at_bps)
        energy_per_byte_j = 8.0 * (a + b * lam)
        latency_per_byte_s = 8.0 * lam
        overhead = self.overhead_bytes_per_message
        result_energy_per_byte_j = 0.0
        result_latency_per_byte_s = 0.0
        if self.downlink is not None:
            down = self.downlink
            result_latency_per_byte_s = 8.0 / down.rate_bps
            result_energy_per_byte_j = 8.0 * down.power_w(down.rate_bps) / down.rate_bps
        return LinkFigures(
            rate_bps=rate,
            energy_per_byte_j=energy_per_byte_j,
            energy_per_message_j=self.energy_per_message_j + overhead * energy_per_byte_j,
            latency_per_byte_s=latency_per_byte_s,
            latency_per_message_s=overhead * latency_per_byte_s,
            rtt_s=self.rtt_s,
            result_energy_per_byte_j=result_energy_per_byte_j,
            result_latency_per_byte_s=result_latency_per_byte_s,
            power_w=up.power_w(rate) if math.isfinite(rate) else up.cap_w,
            measured_rate_bps=up.measured_rate_bps,
            in_measured_range=up.in_range(rate),
        )


@dataclass(frozen=True)
class LinkFigures:
    """The link at one uplink rate, as the solver charges it.

    Attributes:
        rate_bps: Uplink rate in bit/s.
        energy_per_byte_j: Device energy per payload byte sent, J.
        energy_per_message_j: Device energy per tensor sent (fixed cost plus header bytes), J.
        latency_per_byte_s: Transfer time per payload byte, s.
        latency_per_message_s: Transfer time per tensor sent (header bytes), s.
        rtt_s: Round-trip time charged once when anything is offloaded, s.
        result_energy_per_byte_j: Device energy per byte of result received (downlink), J.
        result_latency_per_byte_s: Time per byte of result received (downlink), s.
        power_w: Radio power above device idle while sending at this rate, W.
        measured_rate_bps: ``(low, high)`` rates the power model was measured on, or None if unknown.
        in_measured_range: Whether ``rate_bps`` lies in that range (outside, power is held at the edge).
    """

    rate_bps: float
    energy_per_byte_j: float
    energy_per_message_j: float = 0.0
    latency_per_byte_s: float = 0.0
    latency_per_message_s: float = 0.0
    rtt_s: float = 0.0
    result_energy_per_byte_j: float = 0.0
    result_latency_per_byte_s: float = 0.0
    power_w: float | None = None
    measured_rate_bps: tuple[float, float] | None = None
    in_measured_range: bool = True

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        row = asdict(self)
        if self.measured_rate_bps is not None:
            row["measured_rate_bps"] = list(self.measured_rate_bps)
        return row


class ServerInfo(StrictModel):
    """What the server is."""

    name: str
    device: str
    precision: str


class ServerProfile(StrictModel):
    """Server per-layer costs with the board cost-model structure (energy reported, not charged)."""

    schema_version: int
    server: ServerInfo
    energy_j: CostModel
    latency_s: CostModel
    provenance: Provenance

    @model_validator(mode="after")
    def _check(self) -> ServerProfile:
        tables = {"energy_j": self.energy_j, "latency_s": self.latency_s}
        check_schema_and_provenance(
            self.schema_version, cost_table_keys(tables), self.provenance.values, supported=SCHEMA_VERSIONS
        )
        return self

    @property
    def name(self) -> str:
        """Human name of the server."""
        return f"{self.server.name} ({self.server.precision})"


def load_link(name_or_path: str | Path) -> LinkProfile:
    """Load a shipped link (``wifi``, ``lte``, ``5g``, ``5g-mmwave``, ``ble``) or a link TOML by path."""
    return load_toml_model(resolve_profile(name_or_path, "links"), LinkProfile)


def load_server(name_or_path: str | Path) -> ServerProfile:
    """Load a shipped server (``gpu-server``) or a server TOML by path."""
    return load_toml_model(resolve_profile(name_or_path, "servers"), ServerProfile)
