"""``splitprune serve`` and ``splitprune run``: live split inference between a device and a server."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import SplitpruneError
from . import app
from .common import (
    BoardOption,
    InputShapeOption,
    JsonOption,
    ModelArgument,
    PowerModeOption,
    PrecisionOption,
    emit_json,
    parse_input_shape,
    status,
)
from .split import parse_rate_range

__all__ = ["run", "serve"]

LinkOption = Annotated[str, typer.Option(help="Link profile: wifi, lte, 5g, 5g-mmwave, ble or a .toml")]
ServerOption = Annotated[
    str | None, typer.Option("--server-profile", help="Server profile (gpu-server or a .toml); default: free")
]
ObjectiveOption = Annotated[str, typer.Option(help="energy, latency or weighted")]
AlphaOption = Annotated[float, typer.Option(help="Weight of energy in the weighted objective")]
WireOption = Annotated[
    str | None, typer.Option(help="Intermediate tensors: fp32, fp16 or int8 (default: the --precision)")
]
InputWireOption = Annotated[str, typer.Option(help="The model's input: uint8, fp16 or fp32")]
ModeOpt = Annotated[str, typer.Option("--mode", help="eager, graph or tensorrt (how the board runs it)")]
RangeOption = Annotated[str, typer.Option(help="LOW:HIGH bit/s the policy covers")]
SeedOption = Annotated[int, typer.Option(help="Weight seed (both sides must use the same)")]
TokenOption = Annotated[Path | None, typer.Option(help="File holding a shared secret both sides send")]


class MissingExtraError(SplitpruneError):
    """pyzmq is not installed."""


def _settings(board: str, link: str, server_profile: str | None, objective: str, alpha: float,
              wire: str | None,
              input_wire: str, mode: str, rate_range: str, input_shape: str | None, seed: int, *,
              precision: str | None = None, power_mode: str | None = None) -> Any:
    """The split settings from the options ``serve`` and ``run`` share (the one place to add one)."""
    from ..runtime.cuts import SplitSettings

    try:
        low, high, _ = parse_rate_range(rate_range)
    except SplitpruneError as exc:
        raise SplitpruneError(str(exc).replace("--sweep-bandwidth", "--rate-range")) from None
    shape = None if input_shape is None else parse_input_shape(input_shape, default=(1,))
    return SplitSettings(board=board, link=link, server=server_profile, objective=objective, alpha=alpha,
                         wire=None if wire is None else wire.lower(), input_wire=input_wire.lower(),
                         mode=mode,
                         precision=precision, power_mode=power_mode,
                         rate_range_bps=(low, high), input_shape=shape, seed=seed)


def _prepare(model: str, settings: Any) -> Any:
    try:
        import zmq  # noqa: F401
    except ImportError:
        raise MissingExtraError("pyzmq is not installed; pip install 'splitprune[runtime]'") from None
    from ..runtime.cuts import prepare

    low, high = settings.rate_range_bps
    status.print(f"preparing {model}: policy over {low:g}-{high:g} bit/s", markup=False, highlight=False)
    return prepare(model, settings)  # the solves inside hold native stdout off fd 1 (splitprune.quiet)


def _token(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise SplitpruneError(f"cannot read --token-file {path}: {exc.strerror}; check the path") from None
    if not token:
        raise SplitpruneError(f"--token-file {path} is empty; put a secret in it")
    return token


def _terminate_as_interrupt() -> None:
    """Ctrl-C and SIGTERM stop cleanly (sockets closed, reports written), even in a background job."""
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _interruptible(fn: Any, *args: Any) -> Any:
    """``fn(*args)``; Ctrl-C there ends the command with exit code 130 and no traceback."""
    try:
        return fn(*args)
    except KeyboardInterrupt:
        status.print("interrupted")
        raise typer.Exit(130) from None


@app.command()
def serve(
    model: ModelArgument,
    board: BoardOption = "tx2",
    link: LinkOption = "wifi",
    server_profile: ServerOption = None,
    objective: ObjectiveOption = "energy",
    alpha: AlphaOption = 0.5,
    wire: WireOption = None,
    input_wire: InputWireOption = "uint8",
    mode: ModeOpt = "eager",
    precision: PrecisionOption = None,
    power_mode: PowerModeOption = None,
    rate_range: RangeOption = "100k:10G",
    input_shape: InputShapeOption = None,
    seed: SeedOption = 0,
    listen: Annotated[str, typer.Option(help="Address to bind")] = "tcp://127.0.0.1:5555",
    allow_remote: Annotated[bool, typer.Option(help="Allow a non-loopback --listen address")] = False,
    token_file: TokenOption = None,
    max_message_mb: Annotated[float, typer.Option(help="Largest request accepted, MB")] = 64.0,
    max_batch: Annotated[int, typer.Option(help="Most same-cut requests run as one batch")] = 1,
    batch_timeout_ms: Annotated[float, typer.Option(help="How long a request waits for a batch, ms")] = 0.0,
    cache: Annotated[Path | None, typer.Option(help="Keep exported tails here (reused on restart)")] = None,
    json_out: JsonOption = False,
) -> None:
    """Serve the tails of every cut MODEL's bandwidth policy can choose, until Ctrl-C."""
    from ..runtime.server import Server, check_listen_address

    _terminate_as_interrupt()
    check_listen_address(listen, allow_remote=allow_remote)
    settings = _settings(board, link, server_profile, objective, alpha, wire, input_wire, mode, rate_range,
                         input_shape, seed, precision=precision, power_mode=power_mode)
    token = _token(token_file)
    split_model = _interruptible(_prepare, model, settings)
    server = Server(split_model, listen=listen, token=token, max_message_bytes=int(max_message_mb * 1e6),
                    max_batch=max_batch, batch_timeout_s=batch_timeout_ms / 1e3, cache_dir=cache,
                    allow_remote=allow_remote)
    try:
        errors = server.load()
        for cut in split_model.cuts:
            if cut.cut_id in errors:
                status.print(f"cut {cut.cut_id} ({cut.kind}, sends {', '.join(cut.crossing)}): "
                             f"tail(head(x)) matches model(x) within {errors[cut.cut_id]:.2g}",
                             markup=False, highlight=False)
        address = server.bind()
        status.print(f"serving {model} (model id {split_model.model_id}) on {address}", markup=False,
                     highlight=False)
        server.serve()
    except KeyboardInterrupt:
        status.print("stopped")
    finally:
        server.close()
    if json_out:
        emit_json({"schema": "splitprune.serve/1", "model": model, "model_id": split_model.model_id,
                   "listen": server.bound, "cuts": [c.to_dict() for c in split_model.cuts],
                   "max_abs_error": dict(server.check_errors), **server.stats.to_dict()})


@app.command()
def run(
    model: ModelArgument,
    connect: Annotated[str, typer.Option(help="The server's address")] = "tcp://127.0.0.1:5555",
    board: BoardOption = "tx2",
    link: LinkOption = "wifi",
    server_profile: ServerOption = None,
    objective: ObjectiveOption = "energy",
    alpha: AlphaOption = 0.5,
    wire: WireOption = None,
    input_wire: InputWireOption = "uint8",
    mode: ModeOpt = "eager",
    precision: PrecisionOption = None,
    power_mode: PowerModeOption = None,
    rate_range: RangeOption = "100k:10G",
    input_shape: InputShapeOption = None,
    seed: SeedOption = 0,
    requests: Annotated[int, typer.Option(help="Number of requests")] = 100,
    inputs: Annotated[Path | None, typer.Option(help="Folder of images or .pt tensors")] = None,
    timeout_ms: Annotated[float, typer.Option(help="Longest wait for the server, then run locally")] = 1000.0,
    probe_every: Annotated[int, typer.Option(help="Requests between probes while all local")] = 10,
    hysteresis: Annotated[float, typer.Option(help="Relative margin past a policy boundary")] = 0.15,
    smoothing: Annotated[float, typer.Option(help="Weight of a new rate sample, (0, 1]")] = 0.5,
    token_file: TokenOption = None,
    sensor: Annotated[str | None, typer.Option(help="measure sensor: auto, jtop, ...")] = None,
    check: Annotated[bool, typer.Option(help="Compare every output with the unsplit model")] = True,
    log: Annotated[Path | None, typer.Option(help="Write one JSON line per request here")] = None,
    plot: Annotated[Path | None, typer.Option(help="Write a timeline PNG here")] = None,
    json_out: JsonOption = False,
) -> None:
    """Run MODEL split against a server: heads here, tails there, the cut following the uplink."""
    from ..runtime.device import Device, DeviceOptions
    from ..runtime.report import write_log
    from ..runtime.session import inputs as make_inputs
    from ..runtime.session import run_requests

    _terminate_as_interrupt()
    if requests < 1:
        raise SplitpruneError(f"--requests must be at least 1, got {requests}")
    options = DeviceOptions(timeout_s=timeout_ms / 1e3, probe_every=probe_every, smoothing=smoothing,
                            hysteresis=hysteresis)
    if inputs is not None and not inputs.is_dir():
        raise SplitpruneError(f"--inputs {inputs} is not a folder; give a folder of images or .pt files")
    settings = _settings(board, link, server_profile, objective, alpha, wire, input_wire, mode, rate_range,
                         input_shape, seed, precision=precision, power_mode=power_mode)
    token = _token(token_file)
    power = None
    if sensor is not None:
        from measure.errors import MeasureError
        from measure.sensors import make_sensor

        try:
            power = make_sensor(sensor)
        except MeasureError as exc:
            raise SplitpruneError(f"--sensor {sensor}: {exc}") from None
    split_model = _interruptible(_prepare, model, settings)
    device = Device(split_model, connect, token=token, options=options, sensor=power)
    try:
        if not _interruptible(device.connect):
            status.print(f"warning: no answer from {connect}; running locally and probing", markup=False,
                         highlight=False)
        source = make_inputs(requests, tuple(split_model.example.shape), directory=inputs)
        records, summary = run_requests(device, source, count=requests, check=check)
    finally:
        device.close()
        if power is not None:
            power.close()
    if log is not None:
        write_log(records, log)
        status.print(f"log written to {log}")
    if plot is not None:
        from ..plots.runtime import plot_timeline

        plot_timeline(records, plot, title=f"{model} on {board} over {link}")
        status.print(f"plot written to {plot}")
    document = summary.to_dict()
    if json_out:
        emit_json(document)
    else:
        _print_summary(document)
    if summary.interrupted:
        raise typer.Exit(130)


def _print_summary(doc: dict[str, Any]) -> None:
    from .common import people

    lat, pred = doc["latency_s"], doc["predicted_latency_s"]
    people.print(f"{doc['completed']}/{doc['requests']} requests completed, {doc['lost']} lost, "
                 f"{doc['local_fallbacks']} local fallbacks, {doc['switches']} cut switches")
    for row in doc["splits_used"]:
        people.print(f"  cut {row['cut']} ({row['kind']}): {row['count']} requests")
    if lat["median"] is not None:
        people.print(f"latency median {lat['median'] * 1e3:.2f} ms, p95 {lat['p95'] * 1e3:.2f} ms "
                     f"(predicted {pred['median'] * 1e3:.2f} / {pred['p95'] * 1e3:.2f} ms)")
    people.print(f"uplink estimate {doc['uplink_estimate_bps']['final'] / 1e6:.3g} Mbit/s; max abs error "
                 f"{doc['max_abs_error']}")
