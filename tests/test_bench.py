"""bench/train_bench.py's care of its runs: each child ends by its deadline even
when it prints nothing, and every failed run says why (the benchmark then exits
non-zero, so a run that could not happen is never a silent gap in the table)."""

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import train_bench  # noqa: E402


def run(tmp_path, code, timeout=30):
    out = tmp_path / f"{len(list(tmp_path.iterdir()))}.json"  # a new record each run
    command = [sys.executable, "-c", code.replace("OUT", repr(str(out)))]
    return train_bench.run_child("fake", command, out, timeout, verbose=False)


def test_a_silent_child_is_killed_at_its_deadline(tmp_path):
    start = time.monotonic()
    record = run(tmp_path, "import time; time.sleep(60)", timeout=2)
    assert time.monotonic() - start < 15
    assert record["status"] == "failed: timed out after 2 s (no output)"


def test_a_child_that_fails_after_writing_ok_is_a_failure(tmp_path):
    record = run(tmp_path, "import json, sys; open(OUT, 'w').write("
                           "json.dumps({'status': 'ok'})); print('then'); sys.exit(3)")
    assert record["status"] == "failed: exit code 3 after writing its record (then)"


def test_a_failed_run_names_its_error(tmp_path):
    record = run(tmp_path, "import json, sys; open(OUT, 'w').write(json.dumps("
                           "{'status': 'failed', 'error': 'Traceback\\nKeyError: 7\\n'}));"
                           " sys.exit(1)")
    assert record["status"] == "failed: KeyError: 7"
    crashed = run(tmp_path, "raise ValueError('no data here')")
    assert crashed["status"] == ("failed: exit code 1, no record written "
                                 "(ValueError: no data here)")


def test_output_that_is_not_utf8_is_read_on(tmp_path):
    """A byte that is no UTF-8 must not stop the reading (the child would
    then block on a full pipe until the deadline)."""
    start = time.monotonic()
    record = run(tmp_path, "import sys; sys.stdout.buffer.write(b'\\xff' + b'x' * 200_000);"
                           " print(); print('done')", timeout=20)
    assert time.monotonic() - start < 15
    assert record["status"] == "failed: exit code 0, no record written (done)"


@pytest.mark.parametrize("path, short", [
    (str(train_bench.ROOT / "bench" / "run_one.py"), "bench/run_one.py"),
    (str(train_bench.ROOT) + "-other/python", str(train_bench.ROOT) + "-other/python")])
def test_only_paths_inside_the_checkout_are_shortened(path, short):
    assert train_bench.shorten(path) == short
