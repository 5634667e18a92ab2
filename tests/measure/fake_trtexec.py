"""A stand-in for TensorRT's ``trtexec``, installed by the tests as ``trtexec`` on ``PATH``.

Build runs (``--onnx=... --saveEngine=...``) check the ONNX file and write an engine file naming the
precision flags; timing runs (``--loadEngine=...``) print the captured log named by ``FAKE_TRTEXEC_TEXT``
up to ``Starting inference``, sleep for the warm-up and ``--duration`` as trtexec does, then print the
rest (the performance summary). Every call's arguments are appended as a JSON line to
``FAKE_TRTEXEC_CALLS``.
"""

import json
import os
import sys
import time
from pathlib import Path


def main() -> int:
    argv = sys.argv[1:]
    with open(os.environ["FAKE_TRTEXEC_CALLS"], "a") as calls:
        calls.write(json.dumps(argv) + "\n")
    options = dict(arg[2:].split("=", 1) for arg in argv if "=" in arg)
    flags = [arg for arg in argv if arg.startswith("--") and "=" not in arg]
    if "onnx" in options:
        onnx = Path(options["onnx"])
        if not onnx.is_file() or onnx.stat().st_size == 0:
            print(f"[12/01/2026-20:00:00] [E] Could not open file {onnx}", flush=True)
            return 1
        Path(options["saveEngine"]).write_text("fake engine " + " ".join(flags))
        print("[12/01/2026-20:00:01] [I] Engine built in 1.2 sec.", flush=True)
        return 0
    if not Path(options.get("loadEngine", "")).is_file():
        print("[12/01/2026-20:00:00] [E] Engine deserialization failed", flush=True)
        return 1
    text = Path(os.environ["FAKE_TRTEXEC_TEXT"]).read_text()
    head, mark, tail = text.partition("Starting inference")
    print(head + mark, flush=True)
    time.sleep(float(options.get("warmUp", "200")) / 1e3 + float(options.get("duration", "3")))
    print(tail.lstrip("\n"), end="", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
