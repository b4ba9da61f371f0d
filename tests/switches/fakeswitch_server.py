"""Run one fake-switches simulator (a stateful switch CLI over SSH) in this process.

``python -m tests.switches.fakeswitch_server MODEL PORT USER PASSWORD``: twisted's reactor is
global, so each simulator gets a process of its own. fake-switches pins a Twisted from 2016;
its code runs on a current Twisted, installed beside it (see pyproject's ``test`` extra).
"""

from __future__ import annotations

import sys


def main(model: str, port: int, username: str, password: str) -> None:
    from fake_switches import switch_factory
    from fake_switches.transports.ssh_service import SwitchSshService
    from twisted.internet import reactor

    # The enable password is compared as text, the SSH login as bytes.
    core = switch_factory.SwitchFactory().get(model, "sw1", password)
    service = SwitchSshService(
        ip="127.0.0.1", port=port, switch_core=core, users={username: password.encode()}
    )
    service.hook_to_reactor(reactor)
    print("listening", flush=True)
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4])
