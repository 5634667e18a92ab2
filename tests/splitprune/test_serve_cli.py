"""``serve`` and ``run`` user mistakes: one line on stderr, exit 2, before any model is built."""

import json

import pytest
from cli_runner import run_cli


@pytest.mark.parametrize(("args", "message"), [
    (["serve", "m.py:f", "--listen", "tcp://0.0.0.0:5555"], "--allow-remote"),
    (["serve", "m.py:f", "--listen", "udp://x"], "use tcp://HOST:PORT"),
    (["run", "m.py:f", "--wire", "ratio:4"], "cannot send --wire"),
    (["run", "m.py:f", "--input-wire", "jpeg:90"], "cannot send --input-wire"),
    (["run", "m.py:f", "--requests", "0"], "--requests must be at least 1"),
    (["run", "m.py:f", "--smoothing", "2"], "--smoothing"),
    (["run", "m.py:f", "--rate-range", "5:1"], "bad --rate-range '5:1'"),
])
def test_cli_user_mistakes_are_one_line_errors(args, message):
    result = run_cli(*args)
    assert result.code == 2 and result.out == ""
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


@pytest.mark.parametrize(("args", "message"), [
    (["serve", "m.py:f", "--listen", "tcp://0.0.0.0:5555", "--allow-remote"], "--curve SERVER.key_secret"),
    (["run", "m.py:f", "--connect", "tcp://10.0.0.7:5555"], "--curve DEVICE.key_secret --server-key"),
    (["serve", "m.py:f", "--curve", "{keys}/server.key_secret"], "go together"),
    (["run", "m.py:f", "--server-key", "{keys}/server.key"], "go together"),
    (["run", "m.py:f", "--curve", "{keys}/no.key_secret", "--server-key", "{keys}/server.key"], "not found"),
    (["run", "m.py:f", "--curve", "{keys}/server.key", "--server-key", "{keys}/server.key"],
     "holds only a public key"),
    (["serve", "m.py:f", "--curve", "{keys}/server.key_secret", "--authorized-keys", "{keys}/none"],
     "is not a folder"),
    (["serve", "m.py:f", "--curve", "{keys}/server.key_secret", "--authorized-keys", "{keys}", "--insecure"],
     "contradict"),
    (["keys", "server", "--out", "{keys}"], "--force"),
    (["keys", "a/b", "--out", "{keys}"], "bad key name"),
])
def test_key_and_plaintext_mistakes_are_one_line_errors(tmp_path, args, message):
    made = run_cli("keys", "server", "--out", str(tmp_path), "--json")
    assert made.code == 0 and json.loads(made.out)["secret_key_file"] == str(tmp_path / "server.key_secret")
    result = run_cli(*(a.format(keys=tmp_path) for a in args))
    assert result.code == 2 and result.out == ""
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
