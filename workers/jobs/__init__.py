"""RQ job functions: top-level, idempotent, taking IDs. Enqueued as ``workers.jobs.<name>``."""

from workers.jobs.inspect import continue_inspect, inspect_node
from workers.jobs.instances import (
    build_instance,
    continue_deploy,
    delete_instance,
    release_failed_deploy,
)
from workers.jobs.nodes import clean_node, continue_clean, read_sensors, set_power, verify_node
from workers.jobs.reconcile import reconcile

__all__ = [
    "build_instance",
    "clean_node",
    "continue_clean",
    "continue_deploy",
    "continue_inspect",
    "delete_instance",
    "inspect_node",
    "read_sensors",
    "reconcile",
    "release_failed_deploy",
    "set_power",
    "verify_node",
]
