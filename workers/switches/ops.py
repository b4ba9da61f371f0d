"""What callers do with a switch driver: push a batch safely, and compare wanted with actual.

:func:`push` is the one entry point the deploy flow and the reconciler need: validate, check
the safety rails, keep one change per port (the last), apply the batch in ONE session and
read it back in that same session.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from workers.switches import policy
from workers.switches.base import ErrorKind, PortConfig, SwitchConn, SwitchDriver, SwitchError


def coalesce(changes: Sequence[PortConfig]) -> list[PortConfig]:
    """One change per port, the last one given, in first-seen port order."""
    last: dict[str, PortConfig] = {}
    for change in changes:
        last[change.port] = change
    return list(last.values())


def drift(wanted: Mapping[str, PortConfig], actual: Mapping[str, PortConfig]) -> list[PortConfig]:
    """The wanted configs the switch does not have (missing ports included)."""
    return [w for port, w in wanted.items() if port not in actual or not w.matches(actual[port])]


def push(
    driver: SwitchDriver, conn: SwitchConn, changes: Sequence[PortConfig], *, verify: bool = True
) -> dict[str, PortConfig]:
    """Apply ``changes`` in one session; the ports' actual state read back after it.

    Raises :class:`SwitchError`: ``invalid`` (validate), ``rejected`` (the rails or the switch
    refused; with ``verify``, also when the read-back differs from what was asked), or the
    driver's auth/unreachable/transient/error.
    """
    batch = coalesce(changes)
    driver.validate(conn)
    policy.check(conn, batch)
    if not batch:
        return {}
    with driver.session(conn) as session:
        session.apply(batch)
        actual = session.read([c.port for c in batch]) if verify else {}
    if verify:
        off = drift({c.port: c for c in batch}, actual)
        if off:
            raise SwitchError(
                f"switch {conn.name} did not take: "
                + "; ".join(f"wanted {w.describe()}, has {actual[w.port].describe()}" for w in off),
                ErrorKind.REJECTED,
            )
    return actual
