"""Quota reservation is one conditional UPDATE: racing creates can never overshoot."""

from __future__ import annotations

import threading

import pytest

from portal.core.errors import QuotaExceeded
from portal.services import identity
from tenants import quotas
from tenants.models import Quota


def _project(ctx, limit_instances: int) -> str:
    with ctx.session() as s:
        project = identity.create_project(ctx, s, "racers", None)
        identity.set_quota(ctx, s, project.id, {"instances": limit_instances}, identity.SYSTEM)
        return project.id


def test_reserve_and_release(ctx):
    pid = _project(ctx, 2)
    with ctx.session() as s:
        quotas.reserve(s, pid, instances=1, vcpus=4, ram_mb=1024)
        quotas.reserve(s, pid, instances=1, vcpus=4, ram_mb=1024)
    with ctx.session() as s, pytest.raises(QuotaExceeded) as err:
        quotas.reserve(s, pid, instances=1, vcpus=4, ram_mb=1024)
    assert "instances (limit 2, in use 2, requested 1)" in err.value.detail
    with ctx.session() as s:
        quotas.release(s, pid, instances=1, vcpus=4, ram_mb=1024)
    with ctx.session() as s:
        quotas.reserve(s, pid, instances=1, vcpus=4, ram_mb=1024)
        q = quotas.ensure(s, pid, ctx.quota_defaults)
        assert (q.instances_used, q.vcpus_used, q.ram_mb_used) == (2, 8, 2048)


def test_unlimited_is_minus_one(ctx):
    pid = _project(ctx, -1)
    with ctx.session() as s:
        for _ in range(50):
            quotas.reserve(s, pid, instances=1, vcpus=1, ram_mb=1)


def test_racing_reservations_never_overshoot(ctx):
    pid = _project(ctx, 5)
    ok: list[bool] = []
    barrier = threading.Barrier(12)

    def create() -> None:
        barrier.wait()
        try:
            with ctx.session() as s:
                quotas.reserve(s, pid, instances=1, vcpus=2, ram_mb=512)
            ok.append(True)
        except QuotaExceeded:
            ok.append(False)

    threads = [threading.Thread(target=create) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert ok.count(True) == 5 and ok.count(False) == 7
    with ctx.session() as s:
        assert quotas.ensure(s, pid, ctx.quota_defaults).instances_used == 5


def test_a_project_without_a_quota_row_gets_the_defaults_on_first_reserve(ctx):
    with ctx.session() as s:
        pid = identity.create_project(ctx, s, "fresh", None).id
        s.query(Quota).filter_by(project_id=pid).delete()
    with ctx.session() as s, pytest.raises(QuotaExceeded):
        quotas.reserve(s, pid, instances=1, vcpus=1, ram_mb=1)  # no defaults: refused
    with ctx.session() as s:
        quotas.reserve(s, pid, instances=1, vcpus=2, ram_mb=3, defaults=ctx.quota_defaults)
    with ctx.session() as s:
        q = s.get_one(Quota, pid)
        assert (q.instances, q.vcpus, q.ram_mb) == (
            ctx.quota_defaults.instances,
            ctx.quota_defaults.vcpus,
            ctx.quota_defaults.ram_mb,
        )
        assert (q.instances_used, q.vcpus_used, q.ram_mb_used) == (1, 2, 3)
