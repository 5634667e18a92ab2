"""``serve`` and ``run`` user mistakes: one line on stderr, exit 2, before any model is built."""

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
