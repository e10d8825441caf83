"""What every fault-injection test asserts (tests/test_*parallel_faults.py): the
call raises the expected error, with the expected words, within BOUND_S seconds.

With ``D2L_FAULT_TABLE=path`` set, each check also appends one JSON line to
``path``: framework, fault, the message's first line and the seconds it took
(the table in the data-parallel issue's closing note is made from it)."""

import json
import os
import socket
import time

import pytest

BOUND_S = 60  # every fault must be reported within this many seconds


def timed(call, error, match, framework="", fault=""):
    """``call()``'s error message and the seconds it took to fail."""
    start = time.monotonic()
    with pytest.raises(error, match=match) as info:
        call()
    seconds = time.monotonic() - start
    assert seconds < BOUND_S, seconds
    table = os.environ.get("D2L_FAULT_TABLE")
    if table and fault:
        first = str(info.value).strip().splitlines()[0] if str(info.value).strip() else ""
        with open(table, "a") as f:
            f.write(json.dumps({"framework": framework, "fault": fault,
                                "error": type(info.value).__name__,
                                "message": first, "seconds": round(seconds, 1)}) + "\n")
    return str(info.value), seconds


def free_ports(n):
    """``n`` local ports that were free a moment ago (nobody listens on them)."""
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports
