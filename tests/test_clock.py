"""The system clock counts suspended time: readings per platform, and real Linux time namespaces.

A suspend cannot be staged on a test machine, but its trace on the clocks can: a Linux time
namespace whose ``CLOCK_BOOTTIME`` is ahead of its ``CLOCK_MONOTONIC`` is exactly what a
machine suspended for that long looks like to a process. The child processes here unshare
one (``unshare(CLONE_NEWTIME)``, then ``/proc/self/timens_offsets``) and fork into it, so a
forked child keeps its parent's memory, an ``EmmaAuth`` with its token included, and wakes up
"later" by ``CLOCK_BOOTTIME`` only.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import textwrap
import time

import pytest
from fakes import WAIT

from requests_emma import _system_clock
from requests_emma._core import clock as _clock
from requests_emma.testing import FakeEmmaServer

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="time namespaces and CLOCK_BOOTTIME are Linux's"
)

SUSPENDED = 100_000  # seconds the namespace's CLOCK_BOOTTIME is ahead of its CLOCK_MONOTONIC
SKIPPED = 77  # a child's exit status for "the kernel refused the time namespace"

#: Defines ``wake_up_later()``: fork into a new time namespace whose CLOCK_BOOTTIME is
#: SUSPENDED seconds ahead; returns in the child only (the parent waits and exits with the
#: child's status). Exits SKIPPED, with the reason on stdout, where the kernel refuses.
PRELUDE = f"""
import ctypes, os, sys

def wake_up_later():
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x80) != 0:  # CLONE_NEWTIME
        print("unshare(CLONE_NEWTIME) failed:", os.strerror(ctypes.get_errno()))
        sys.exit({SKIPPED})
    try:
        with open("/proc/self/timens_offsets", "w") as offsets:
            offsets.write("boottime {SUSPENDED} 0")
    except OSError as error:
        print("writing /proc/self/timens_offsets failed:", error.strerror)
        sys.exit({SKIPPED})
    sys.stdout.flush()
    pid = os.fork()
    if pid:
        os._exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"""


def in_suspended_child(code: str, **popen: object) -> subprocess.Popen[str]:
    """A Python process running ``PRELUDE`` and then ``code``."""
    return subprocess.Popen(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(code)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,  # type: ignore[call-overload]
    )


def finished(child: subprocess.Popen[str], stdin: str = "") -> str:
    out, err = child.communicate(stdin, timeout=WAIT * 6)
    if child.returncode == SKIPPED:
        pytest.skip(f"the kernel refused a time namespace: {out.strip()}")
    assert child.returncode == 0, err
    return out


@linux_only
def test_the_system_clock_reads_boottime_not_monotonic_on_linux() -> None:
    """On Linux the system clock's monotonic reading is CLOCK_BOOTTIME: it sees a suspend."""
    child = in_suspended_child(
        """
        import json, time
        from requests_emma._system_clock import SYSTEM_CLOCK
        wake_up_later()
        ours = SYSTEM_CLOCK.monotonic()
        print(json.dumps({
            "ours": ours,
            "boottime": time.clock_gettime(time.CLOCK_BOOTTIME),
            "monotonic": time.monotonic(),
        }))
        """
    )
    readings = json.loads(finished(child).splitlines()[-1])
    assert readings["boottime"] - readings["monotonic"] > SUSPENDED - 1
    assert readings["ours"] == pytest.approx(readings["boottime"], abs=5.0)


@linux_only
def test_a_token_that_expired_during_a_suspend_is_renewed_before_it_is_sent(
    server: FakeEmmaServer,
) -> None:
    """After a suspend past the token's expiry, the next request gets a new token first: the
    expired one is never sent, and a forward-only body is not lost to a 401."""
    child = in_suspended_child(
        f"""
        import json, sys
        import requests
        from requests_emma import EmmaAuth
        auth = EmmaAuth({server.client_id!r}, {server.client_secret!r},
                        base_url={server.base_url!r})
        before = auth.get_token().access_token
        print(json.dumps({{"before": before}}), flush=True)
        sys.stdin.readline()  # the server has retired the token meanwhile, as time would
        wake_up_later()
        body = iter([b'{{"name": "laptop"}}'])  # a generator: sent once, never replayable
        response = requests.post({server.base_url + "/v1/ssh-keys"!r}, data=body, auth=auth,
                                 headers={{"Content-Type": "application/json"}}, timeout=30)
        print(json.dumps({{"status": response.status_code}}))
        """
    )
    assert child.stdout is not None
    before = json.loads(child.stdout.readline())["before"]
    server.expire_access_tokens()
    result = json.loads(finished(child, "go\n").splitlines()[-1])
    assert result["status"] == 201
    sent = [r.headers.get("Authorization") for r in server.requests if r.path == "/v1/ssh-keys"]
    assert sent and f"Bearer {before}" not in sent
    assert server.token_calls == 2


def test_linux_reads_clock_boottime() -> None:
    """On Linux the reading is a partial over clock_gettime(CLOCK_BOOTTIME)."""
    if not hasattr(time, "CLOCK_BOOTTIME"):
        pytest.skip("this Python has no time.CLOCK_BOOTTIME")
    reading = _clock.suspend_aware_monotonic("linux")
    if not isinstance(reading, functools.partial):
        pytest.skip("this kernel refuses CLOCK_BOOTTIME")
    assert (reading.func, reading.args) == (time.clock_gettime, (time.CLOCK_BOOTTIME,))


def test_macos_reads_clock_monotonic_not_mach_absolute_time() -> None:
    """On macOS the reading is clock_gettime(CLOCK_MONOTONIC), which counts sleep, not
    time.monotonic (mach_absolute_time, which does not)."""
    if not hasattr(time, "CLOCK_MONOTONIC"):
        pytest.skip("this Python has no time.CLOCK_MONOTONIC")
    reading = _clock.suspend_aware_monotonic("darwin")
    assert isinstance(reading, functools.partial)
    assert (reading.func, reading.args) == (time.clock_gettime, (time.CLOCK_MONOTONIC,))


def test_windows_reads_time_monotonic() -> None:
    """On Windows the reading is time.monotonic itself, whose clocks count sleep."""
    assert _clock.suspend_aware_monotonic("win32") is time.monotonic


def test_other_platforms_cross_check_with_the_wall_clock() -> None:
    """Elsewhere the reading is time.monotonic cross-checked with the wall clock."""
    assert isinstance(_clock.suspend_aware_monotonic("freebsd14"), _clock._WallChecked)


def test_the_wall_check_adds_what_the_wall_clock_gained(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cross-checked reading moves on by a suspend that time.monotonic missed, and never
    goes back when the wall clock is set back."""
    machine = {"monotonic": 500.0, "wall": 1_700_000_000.0}
    monkeypatch.setattr(time, "monotonic", lambda: machine["monotonic"])
    monkeypatch.setattr(time, "time", lambda: machine["wall"])
    reading = _clock._WallChecked()
    start = reading()
    machine["monotonic"] += 10.0
    machine["wall"] += 10.0
    assert reading() == pytest.approx(start + 10.0)
    machine["wall"] += 3600.0  # suspended an hour: time.monotonic did not move
    assert reading() == pytest.approx(start + 3610.0)
    machine["wall"] -= 7200.0  # the wall clock set back two hours
    machine["monotonic"] += 5.0
    assert reading() == pytest.approx(start + 3615.0)


def test_the_system_clock_keeps_time_with_time_monotonic_while_awake() -> None:
    """Awake, the system clock's monotonic reading advances at the rate of time.monotonic."""
    ours, theirs = _system_clock.SYSTEM_CLOCK.monotonic(), time.monotonic()
    time.sleep(0.2)
    ours, theirs = _system_clock.SYSTEM_CLOCK.monotonic() - ours, time.monotonic() - theirs
    assert ours == pytest.approx(theirs, abs=0.05)


def test_the_cores_clock_reads_time_but_does_not_wait() -> None:
    """The core's Clock has the system readings, and its sleep() refuses to wait, naming a
    clock that does: the drivers wait, through the clock they run with."""
    core = _clock.Clock()
    assert core.wall() == pytest.approx(time.time(), abs=5.0)
    with pytest.raises(NotImplementedError, match="FakeClock"):
        core.sleep(1.0)
