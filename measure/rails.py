"""Which power rails make a Jetson module's total, and which carry its GPU, CPU and SoC: one table.

Jetson modules label their on-module INA3221 channels differently. Some have one rail for the module
input (``VDD_IN``, ``POM_5V_IN``); the two AGX modules have none, and their module power is the sum of
their rails. :data:`RAIL_LAYOUTS` says, per family, which rails make the total and which carry the
GPU, CPU and SoC; :func:`match_layout` picks the layout from the labels a board shows (never from
channel indices, which shift between boards and JetPack releases). Adding a board is one entry.

Sources, cited per entry: the NVIDIA Jetson Linux Developer Guide, "Platform Power and Performance"
(the power-monitor tables of each module family), and jetson-stats (``jtop/core/power.py``,
``total_power()``: the module total is ``VDD_IN`` or ``POM_5V_IN`` where a board has one, else the
sum of every rail but the ``NC`` channels). Jetson Thor (INA238 on its input) is not in the table: its
sysfs labels are not in the public documentation this table was built from; pass ``main_rail=``.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["GUIDE", "RAIL_LAYOUTS", "TOTAL_RAIL_LABELS", "RailLayout", "match_layout"]

GUIDE = "NVIDIA Jetson Linux Developer Guide, Platform Power and Performance"
_JTOP = "jetson-stats jtop/core/power.py total_power()"


@dataclass(frozen=True)
class RailLayout:
    """How one family of Jetson modules labels its power rails.

    Attributes:
        name: The boards the layout covers.
        total: Rails whose sum is the module's power (one input rail, or several).
        gpu: Rails that carry the GPU (alone or shared with other units).
        cpu: Rails that carry the CPU.
        soc: Rails that carry the SoC's other units.
        source: Where the labels and the total come from.
    """

    name: str
    total: tuple[str, ...]
    gpu: tuple[str, ...] = ()
    cpu: tuple[str, ...] = ()
    soc: tuple[str, ...] = ()
    source: str = ""

    @property
    def labels(self) -> tuple[str, ...]:
        """Every rail the layout names, the total's first, each once."""
        return tuple(dict.fromkeys((*self.total, *self.gpu, *self.cpu, *self.soc)))

    def rails_to_read(self, found: Collection[str]) -> list[str]:
        """The rails to read on a board showing ``found``: the total's, then GPU, CPU, SoC present."""
        return [label for label in self.labels if label in self.total or label in found]

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON and run headers."""
        return asdict(self)


RAIL_LAYOUTS: tuple[RailLayout, ...] = (
    RailLayout(
        "Jetson AGX Orin",
        total=("VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0", "VDDQ_VDD2_1V8AO"),
        gpu=("VDD_GPU_SOC",),
        cpu=("VDD_CPU_CV",),
        soc=("VDD_GPU_SOC",),
        source=f"{GUIDE}, Jetson AGX Orin series (INA3221 at 0x40: VDD_GPU_SOC, VDD_CPU_CV, VIN_SYS_5V0; "
        f"at 0x41: NC, VDDQ_VDD2_1V8AO, NC); no module-input rail, so the total is the sum of the "
        f"four, as {_JTOP} reports it",
    ),
    RailLayout(
        "Jetson AGX Xavier",
        total=("GPU", "CPU", "SOC", "CV", "VDDRQ", "SYS5V"),
        gpu=("GPU",),
        cpu=("CPU",),
        soc=("SOC",),
        source=f"{GUIDE}, Jetson AGX Xavier series (INA3221 at 0x40: GPU, CPU, SOC; at 0x41: CV, VDDRQ, "
        f"SYS5V); no module-input rail: the total is the sum of the six, as Ferraz et al. and {_JTOP} "
        "take it",
    ),
    RailLayout(
        "Jetson Orin NX / Orin Nano / Xavier NX",
        total=("VDD_IN",),
        gpu=("VDD_CPU_GPU_CV",),
        cpu=("VDD_CPU_GPU_CV",),
        soc=("VDD_SOC",),
        source=f"{GUIDE}, Jetson Orin NX and Orin Nano series and Jetson Xavier NX series (INA3221 at "
        "0x40: VDD_IN, the module input; VDD_CPU_GPU_CV; VDD_SOC)",
    ),
    RailLayout(
        "Jetson TX2",
        total=("VDD_IN",),
        gpu=("VDD_SYS_GPU",),
        cpu=("VDD_SYS_CPU",),
        soc=("VDD_SYS_SOC",),
        source=f"{GUIDE} (L4T 32), Jetson TX2 series (INA3221 at 0x40: VDD_SYS_GPU, VDD_SYS_SOC, "
        "VDD_4V0_WIFI; at 0x41: VDD_IN, the module input; VDD_SYS_CPU, VDD_SYS_DDR)",
    ),
    RailLayout(
        "Jetson Nano",
        total=("POM_5V_IN",),
        gpu=("POM_5V_GPU",),
        cpu=("POM_5V_CPU",),
        source=f"{GUIDE} (L4T 32), Jetson Nano (INA3221 at 0x40: POM_5V_IN, the module input; "
        "POM_5V_GPU; POM_5V_CPU)",
    ),
)
"""Known layouts. :func:`match_layout` prefers the one naming most of the rails a board shows."""

TOTAL_RAIL_LABELS = tuple(dict.fromkeys(layout.total[0] for layout in RAIL_LAYOUTS if len(layout.total) == 1))
"""Single rails that carry a module's whole input (``VDD_IN``, ``POM_5V_IN``)."""


def match_layout(found: Collection[str]) -> RailLayout | None:
    """The layout of a board showing the rail labels ``found``, or None when no layout fits.

    A layout fits when every rail of its total is present (and, for a one-rail total, one of its other
    rails too); of those that fit, the one naming most of the labels found wins (the first in
    :data:`RAIL_LAYOUTS` on a tie). A board with a module-input
    rail (``VDD_IN``, ``POM_5V_IN``) that no layout names otherwise gets that rail as its total and
    the rails whose label says GPU, CPU or SOC as its parts.
    """
    present = set(found)
    # a one-rail total (VDD_IN) is on several families: such a layout fits only with one of its parts
    fits = [
        layout
        for layout in RAIL_LAYOUTS
        if set(layout.total) <= present and (len(layout.total) > 1 or set(layout.labels[1:]) & present)
    ]
    if fits:
        return max(fits, key=lambda layout: (len(present & set(layout.labels)), -RAIL_LAYOUTS.index(layout)))
    total = next((label for label in TOTAL_RAIL_LABELS if label in present), None)
    if total is None:
        return None

    def having(word: str) -> tuple[str, ...]:
        return tuple(sorted(label for label in present if word in label.upper() and label != total))

    return RailLayout(
        f"unknown board with {total}",
        total=(total,),
        gpu=having("GPU"),
        cpu=having("CPU"),
        soc=having("SOC"),
        source=f"{total} is a module input on every Jetson that has it ({GUIDE}); parts by label",
    )
