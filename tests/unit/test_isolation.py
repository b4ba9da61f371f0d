"""BMC calls in child processes: deadlines, slot parking, error kinds, secrets, retries."""

from __future__ import annotations

import logging
import os
import sys
import time

import pytest

from workers.drivers import isolation, retry
from workers.drivers.base import DriverError, ErrorKind


def _pid() -> int:
    return os.getpid()


def _sleep(seconds: float) -> str:
    time.sleep(seconds)
    return "woke"


def _auth_fail(password: str) -> None:
    raise DriverError(f"login refused for password {password}", ErrorKind.AUTH)


def _crash() -> None:
    raise ZeroDivisionError("boom")


def _die() -> None:
    os._exit(3)


def _nested() -> int:
    # A call made inside a child runs inline: same pid as the child itself.
    return isolation.run(isolation.Call(_pid, (), timeout=5))


def call(fn, *args, timeout=5.0, **kw) -> isolation.Call:
    return isolation.Call(fn, args, timeout=timeout, **kw)


def test_a_call_runs_in_another_process_and_returns_its_value() -> None:
    child = isolation.run(call(_pid))
    assert child != os.getpid()
    assert isolation.run(call(_nested)) != os.getpid()


def test_a_hung_call_is_killed_at_its_deadline_as_unreachable() -> None:
    started = time.monotonic()
    with pytest.raises(DriverError) as err:
        isolation.run(call(_sleep, 30, timeout=0.5, label="get power"))
    assert time.monotonic() - started < 3
    assert err.value.kind == ErrorKind.UNREACHABLE
    assert "get power: no answer within 0.5 s" in str(err.value)


def test_error_kind_crosses_the_process_boundary_and_secrets_are_scrubbed() -> None:
    with pytest.raises(DriverError) as err:
        isolation.run(call(_auth_fail, "hunter2-pw", secrets=("hunter2-pw",)))
    assert err.value.kind == ErrorKind.AUTH
    assert "hunter2-pw" not in str(err.value)
    assert "******" in str(err.value)


def test_unexpected_exceptions_and_dead_children_become_driver_errors() -> None:
    with pytest.raises(DriverError, match="ZeroDivisionError: boom") as err:
        isolation.run(call(_crash))
    assert err.value.kind == ErrorKind.ERROR
    with pytest.raises(DriverError, match="process died"):
        isolation.run(call(_die))


def test_outcomes_come_back_in_call_order() -> None:
    calls = [call(_sleep, d) for d in (0.3, 0.0, 0.15)]
    outcomes = isolation.run_many(calls, slots=3)
    assert [o.value for o in outcomes] == ["woke"] * 3
    assert outcomes[0].seconds > outcomes[1].seconds


def test_hung_calls_give_their_slot_back_so_a_dead_bmc_costs_one_timeout_not_one_each() -> None:
    # 4 dead BMCs (3 s timeout) and 6 quick ones on 2 slots. Without parking, the dead ones
    # would hold both slots for 2 x 3 s; parked after 0.2 s, the pass ends in about one timeout.
    dead = [call(_sleep, 60, timeout=3) for _ in range(4)]
    quick = [call(_sleep, 0.05) for _ in range(6)]
    started = time.monotonic()
    outcomes = isolation.run_many(dead + quick, slots=2, slot_time=0.2, max_in_flight=8)
    wall = time.monotonic() - started
    assert [o.ok for o in outcomes] == [False] * 4 + [True] * 6
    assert all(o.error and o.error.kind == ErrorKind.UNREACHABLE for o in outcomes[:4])
    assert wall < 3 + 2, wall
    # the quick ones did not wait for the dead ones to time out
    assert max(o.seconds for o in outcomes[4:]) < 2


def test_a_process_that_used_pyghmi_refuses_to_fork_instead_of_hanging(monkeypatch) -> None:
    import types

    used = types.SimpleNamespace(iothread=object())  # what a pyghmi Command() leaves behind
    monkeypatch.setitem(sys.modules, "pyghmi.ipmi.private.session", used)
    with pytest.raises(DriverError, match="pyghmi was used directly in this process"):
        isolation.run(call(_pid))


def test_retry_only_transient_errors_with_backoff() -> None:
    attempts: list[int] = []
    sleeps: list[float] = []

    def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise DriverError("BMC busy", ErrorKind.TRANSIENT)
        return "ok"

    assert retry.retrying(flaky, retry.Backoff(attempts=3), sleep=sleeps.append) == "ok"
    assert sleeps == [0.5, 1.0]

    def denied() -> None:
        attempts.append(1)
        raise DriverError("bad password", ErrorKind.AUTH)

    attempts.clear()
    with pytest.raises(DriverError):
        retry.retrying(denied, retry.Backoff(attempts=5), sleep=sleeps.append)
    assert len(attempts) == 1  # an auth failure is never retried


def test_transient_errors_give_up_after_the_last_attempt() -> None:
    sleeps: list[float] = []

    def always_busy() -> None:
        raise DriverError("busy", ErrorKind.TRANSIENT)

    with pytest.raises(DriverError, match="busy"):
        retry.retrying(always_busy, retry.Backoff(attempts=4, max_delay=1.5), sleep=sleeps.append)
    assert sleeps == [0.5, 1.0, 1.5]


def _logs_its_secret(password: str) -> str:
    logging.getLogger("sushy.connector").warning(
        "HTTP request to https://admin:%s@bmc/redfish/v1 with password %s", password, password
    )
    return "done"


def test_bmc_libraries_logging_in_the_child_lose_the_secrets(tmp_path) -> None:
    """What a BMC library logs inside the per-call child never carries the call's secrets
    nor a password written in a URL (the child's inherited handlers scrub every record)."""
    path = tmp_path / "worker.log"
    handler = logging.FileHandler(path)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        call = isolation.Call(
            fn=_logs_its_secret, args=("pw-4-canary",), timeout=10, secrets=("pw-4-canary",)
        )
        assert isolation.run(call) == "done"
    finally:
        root.removeHandler(handler)
        handler.close()
    text = path.read_text()
    assert "with password ******" in text and "admin:******@bmc" in text
    assert "pw-4-canary" not in text
