"""Power sync soak: one pass over N real IPMI BMCs (OpenIPMI ``ipmi_sim``), then again with
10% of them dead.

Run from the repository root: ``.venv/bin/python benchmarks/power_sync.py [--bmcs 200]``.

1. starts N ``ipmi_sim`` processes on 127.0.0.1 (one per BMC, as the test fixtures do:
   tests/emulators/ipmi_sim.py), each with its own UDP port, user and chassis_control;
2. enrolls N ``ipmi`` nodes through ``portal.services`` on a fresh database (SQLite by
   default, ``--postgres`` for PostgreSQL), marked ``manageable`` with a recorded power
   state, as after ``manage``;
3. runs ``workers.power_sync.sync_pass`` (what the loop in ``bms worker`` runs) in this
   process, ``--passes`` times with all BMCs alive: wall seconds, BMC reads/s, errors;
4. kills 10% of the BMCs (``--dead``), runs one pass and reports how much longer it took
   than the median live pass; the target is at most one per-call timeout
   (``BMS_POWER_SYNC_TIMEOUT``) more.

Peak memory: this process's max RSS (the sync loop) and the largest RSS any child reached
(``getrusage(RUSAGE_CHILDREN)``: the per-call children and the emulators), plus the sum of
the emulators' RSS.
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import (
    BENCH_VAR,
    PG_SERVER,
    apply_env,
    bench_env,
    log,
    machine_line,
    recreate_postgres,
    table,
)


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bmcs", type=int, default=200)
    ap.add_argument("--dead", type=float, default=0.10, help="share of BMCs killed")
    ap.add_argument("--passes", type=int, default=3, help="live passes (median reported)")
    ap.add_argument("--workers", type=int, default=16, help="BMS_POWER_SYNC_WORKERS")
    ap.add_argument("--timeout", type=float, default=10.0, help="BMS_POWER_SYNC_TIMEOUT")
    ap.add_argument("--postgres", action="store_true", help="PostgreSQL instead of SQLite")
    args = ap.parse_args()

    var = BENCH_VAR / "power-sync"
    if args.postgres:
        db_url = recreate_postgres("bms_bench_power_sync")
    else:
        var.mkdir(parents=True, exist_ok=True)
        (var / "bms.sqlite").unlink(missing_ok=True)
        db_url = f"sqlite:///{var / 'bms.sqlite'}"
    env = bench_env(
        db_url,
        var,
        BMS_POWER_SYNC_WORKERS=str(args.workers),
        BMS_POWER_SYNC_TIMEOUT=str(args.timeout),
        BMS_POWER_SYNC_MAX_FAILURES="3",
    )
    apply_env(env)

    from portal import migrate
    from portal.core.models import Node
    from portal.core.states import MANAGEABLE, POWER_OFF
    from portal.services import identity
    from portal.services import nodes as svc
    from portal.services.context import Context
    from tests.emulators.ipmi_sim import IpmiSim
    from workers import power_sync
    from workers.context import current

    migrate.upgrade(db_url)
    log(machine_line())
    workdir = Path(tempfile.mkdtemp(prefix="bms-power-sync-"))
    sims: list[IpmiSim] = []
    try:
        started = time.monotonic()
        for i in range(args.bmcs):
            sims.append(IpmiSim(workdir / f"bmc-{i}", name=f"bmc-{i}").start())
        log(f"{args.bmcs} ipmi_sim BMCs up in {time.monotonic() - started:.1f} s")
        emulator_rss_mb = sum(_rss_kb(s.pid or 0) for s in sims) / 1024

        ctx = Context.build(current().settings)
        with ctx.session() as s:
            for i, sim in enumerate(sims):
                node = svc.create_node(
                    ctx,
                    s,
                    {
                        "name": f"ps-{i}",
                        "driver": "ipmi",
                        "driver_info": {
                            "ipmi_address": "127.0.0.1",
                            "ipmi_port": sim.port,
                            "ipmi_username": sim.username,
                            "ipmi_password": sim.password,
                        },
                        "properties": {"cpus": 8, "memory_mb": 16384, "local_gb": 100},
                    },
                    identity.SYSTEM,
                )
                node.provision_state = MANAGEABLE
                node.power_state = POWER_OFF
        wctx = current()
        wctx = dataclasses.replace(wctx)  # the settings above, from the environment

        live = []
        for n in range(args.passes):
            report = power_sync.sync_pass(wctx)
            live.append(report)
            log(f"live pass {n + 1}: {report.as_dict()}")
        dead_count = max(1, round(args.bmcs * args.dead))
        for sim in sims[:dead_count]:
            sim.stop()
        dead = power_sync.sync_pass(wctx)
        log(f"pass with {dead_count} dead: {dead.as_dict()}")
        with ctx.session() as s:
            failures = s.query(Node).filter(Node.power_sync_failures > 0).count()

        live_wall = statistics.median(r.seconds for r in live)
        met = dead.seconds - live_wall <= args.timeout
        self_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        child_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        rows = [
            [
                "all alive",
                str(args.bmcs),
                f"{live_wall:.2f}",
                f"{args.bmcs / live_wall:.0f}",
                str(sum(r.read_failed for r in live)),
                "",
            ],
            [
                f"{dead_count} dead",
                str(args.bmcs),
                f"{dead.seconds:.2f}",
                f"{args.bmcs / dead.seconds:.0f}",
                f"{dead.read_failed} ({', '.join(f'{k} {v}' for k, v in dead.errors.items())})",
                f"+{dead.seconds - live_wall:.2f} s (timeout {args.timeout:g} s)",
            ],
        ]
        print()
        print(
            table(
                ["pass", "BMCs", "wall s", "reads/s", "errors", "growth vs live"],
                rows,
            )
        )
        print()
        print(
            f"workers {args.workers}, per-call timeout {args.timeout:g} s; "
            f"peak RSS: sync process {self_mb:.0f} MB, largest child {child_mb:.0f} MB; "
            f"{args.bmcs} emulators {emulator_rss_mb:.0f} MB in all; "
            f"nodes with failures recorded: {failures}; "
            f"target (growth <= timeout): {'met' if met else 'MISSED'}"
        )
        if args.postgres:
            log(f"database: {PG_SERVER}/bms_bench_power_sync")
    finally:
        for sim in sims:
            sim.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
