"""Live split computing: a server that runs tails, devices that run heads and follow the uplink.

This package sits above :mod:`splitprune.split` (the exact bandwidth policy) and
:mod:`splitprune.export` (head and tail programs); neither imports it.

- :mod:`.protocol`: the wire format (JSON header frame + raw tensor frames; codecs fp32/fp16/int8/uint8).
- :mod:`.cuts`: :class:`SplitSettings`, :func:`prepare` -> :class:`SplitModel` (policy, cuts, ids).
- :mod:`.rate`: the uplink estimate (token-bucket aware) and the cut choice (hysteresis, confirmation).
- :mod:`.server`: :class:`Server` (ZeroMQ ROUTER; tails via torch.export; errors, limits, batching).
- :mod:`.device`: :class:`Device` (``Device(model, address).infer(x)``; timeouts, local fallback).
- :mod:`.keys`: CURVE key pairs (``splitprune keys``), the server's allowed devices, plaintext rules.
- :mod:`.session`: inputs and :func:`run_requests`; :mod:`.report`: the log and the summary.

pyzmq (extra ``runtime``) is imported only when a socket is opened.
"""

from __future__ import annotations

from .cuts import Cut as Cut
from .cuts import SplitModel as SplitModel
from .cuts import SplitSettings as SplitSettings
from .cuts import prepare as prepare
from .device import Device as Device
from .device import DeviceOptions as DeviceOptions
from .device import RequestRecord as RequestRecord
from .report import RunSummary as RunSummary
from .server import Server as Server
