"""Link and server profiles for split computing.

A link profile (``configs/links/*.toml``) describes the device's uplink: its rate in bit/s (given, or
computed from a Shannon form ``bandwidth_hz * log2(1 + SNR) * efficiency``), the radio power while
transmitting as a linear model ``P = alpha_w_per_bps * rate_bps + beta_w`` (Huang et al., MobiSys
2012), the round-trip time, an optional per-message overhead and an optional downlink for the result.
Every number carries a ``provenance.values`` entry.

Sending ``b`` bytes at rate ``r`` takes ``8 b / r`` seconds and costs ``P(r) * 8 b / r`` joules, so
both are linear in ``1 / r``; :class:`LinkFigures` holds those per-byte figures for one rate, and the
split solver's exact bandwidth policy relies on that linearity.

A server profile (``configs/servers/*.toml``) gives the server's per-layer latency and energy with the
board's :class:`~splitprune.board.CostModel` structure, so end-to-end latency is defined.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from .board import SCHEMA_VERSIONS, CostModel, Provenance, cost_table_keys, couple_energy
from .config import StrictModel, check_schema_and_provenance, load_toml_model, resolve_profile

__all__ = [
    "LinkFigures",
    "LinkProfile",
    "ServerProfile",
    "load_link",
    "load_server",
]



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


class Uplink(StrictModel):
    """Uplink rate (give ``rate_bps`` or a ``shannon`` table, not both) and transmit power model.

    Attributes:
        rate_bps: Sustained application-level uplink rate in bit/s.
        shannon: Alternative to ``rate_bps``.
        alpha_w_per_bps: Slope of transmit power in the rate, W per bit/s.
        beta_w: Transmit power at zero rate (the radio's base power while sending), W.
    """

    rate_bps: float | None = Field(default=None, gt=0)
    shannon: Shannon | None = None
    alpha_w_per_bps: float = Field(default=0.0, ge=0)
    beta_w: float = Field(ge=0)

    @model_validator(mode="after")
    def _one_rate(self) -> Uplink:
        if (self.rate_bps is None) == (self.shannon is None):
            raise ValueError("give exactly one of uplink.rate_bps and uplink.shannon")
        return self

    @property
    def nominal_rate_bps(self) -> float:
        """The profile's uplink rate in bit/s."""
        return self.rate_bps if self.rate_bps is not None else self.shannon.rate_bps  # type: ignore[union-attr]


class Downlink(StrictModel):
    """Downlink used only when the result is sent back (``SplitOptions.downlink``)."""

    rate_bps: float = Field(gt=0)
    alpha_w_per_bps: float = Field(default=0.0, ge=0)
    beta_w: float = Field(ge=0)


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
        check_schema_and_provenance(self.schema_version, self.number_keys(), self.provenance.values)
        return self

    def number_keys(self) -> list[str]:
        """Dotted names of every number set in this profile, e.g. ``uplink.beta_w``."""
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

    def figures(self, rate_bps: float | None = None) -> LinkFigures:
        """Per-byte costs at ``rate_bps`` (default: the profile's uplink rate)."""
        rate = self.uplink.nominal_rate_bps if rate_bps is None else float(rate_bps)
        if not rate > 0 or math.isinf(rate):
            raise ValueError(f"rate_bps must be positive and finite, got {rate_bps}")
        return self.figures_at_inverse_rate(1.0 / rate)

    def figures_at_inverse_rate(self, inv_rate_s_per_bit: float) -> LinkFigures:
        """Per-byte costs at ``1 / rate``; ``0`` means an infinitely fast link (used for slopes)."""
        up = self.uplink
        energy_per_byte_j = 8.0 * up.alpha_w_per_bps + 8.0 * up.beta_w * inv_rate_s_per_bit
        latency_per_byte_s = 8.0 * inv_rate_s_per_bit
        overhead = self.overhead_bytes_per_message
        result_energy_per_byte_j = 0.0
        result_latency_per_byte_s = 0.0
        if self.downlink is not None:
            down = self.downlink
            result_latency_per_byte_s = 8.0 / down.rate_bps
            result_energy_per_byte_j = 8.0 * down.alpha_w_per_bps + 8.0 * down.beta_w / down.rate_bps
        return LinkFigures(
            rate_bps=math.inf if inv_rate_s_per_bit == 0 else 1.0 / inv_rate_s_per_bit,
            energy_per_byte_j=energy_per_byte_j,
            energy_per_message_j=self.energy_per_message_j + overhead * energy_per_byte_j,
            latency_per_byte_s=latency_per_byte_s,
            latency_per_message_s=overhead * latency_per_byte_s,
            rtt_s=self.rtt_s,
            result_energy_per_byte_j=result_energy_per_byte_j,
            result_latency_per_byte_s=result_latency_per_byte_s,
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
    """

    rate_bps: float
    energy_per_byte_j: float
    energy_per_message_j: float = 0.0
    latency_per_byte_s: float = 0.0
    latency_per_message_s: float = 0.0
    rtt_s: float = 0.0
    result_energy_per_byte_j: float = 0.0
    result_latency_per_byte_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return asdict(self)


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
        couple_energy(self.energy_j, self.latency_s)
        return self

    @property
    def name(self) -> str:
        """Human name of the server."""
        return f"{self.server.name} ({self.server.precision})"


def load_link(name_or_path: str | Path) -> LinkProfile:
    """Load a shipped link (``wifi``, ``lte``, ``5g``, ``ble``) or a link TOML by path."""
    return load_toml_model(resolve_profile(name_or_path, "links"), LinkProfile)


def load_server(name_or_path: str | Path) -> ServerProfile:
    """Load a shipped server (``gpu-server``) or a server TOML by path."""
    return load_toml_model(resolve_profile(name_or_path, "servers"), ServerProfile)
