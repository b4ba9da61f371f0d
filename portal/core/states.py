"""The node and instance lifecycles, each declared once as a transition table.

Node states follow Ironic's names so operators recognise them. ``done``, ``fail``,
``wait`` and ``resume`` are fired by workers; the rest are user actions.

    enroll --manage--> verifying --done--> manageable --provide--> cleaning --done--> available
    available --deploy--> deploying --done--> active --undeploy--> deleting --done--> cleaning
    deploying --wait--> wait call-back --resume--> deploying      (agent-driven steps)
    cleaning  --wait--> clean wait     --resume--> cleaning
    verifying --fail--> enroll; deploying/wait call-back --fail--> deploy failed;
    cleaning/clean wait/deleting --fail--> clean failed
    deploy failed --deploy--> deploying (retry) | --undeploy--> deleting
    clean failed  --provide--> cleaning (retry) | --manage--> manageable
    manageable --inspect--> inspecting --done--> manageable | --fail--> inspect failed
    inspecting --wait--> inspect wait --resume--> inspecting      (in-band, by the agent)
    inspect failed --inspect--> inspecting (retry) | --manage--> manageable
"""

from __future__ import annotations

from portal.core.fsm import StateMachine

ENROLL = "enroll"
VERIFYING = "verifying"
MANAGEABLE = "manageable"
CLEANING = "cleaning"
CLEAN_WAIT = "clean wait"
CLEAN_FAILED = "clean failed"
AVAILABLE = "available"
DEPLOYING = "deploying"
DEPLOY_WAIT = "wait call-back"
DEPLOY_FAILED = "deploy failed"
ACTIVE = "active"
DELETING = "deleting"
INSPECTING = "inspecting"
INSPECT_WAIT = "inspect wait"
INSPECT_FAILED = "inspect failed"

NODE_FSM = StateMachine(
    name="node",
    transitions={
        (ENROLL, "manage"): VERIFYING,
        (VERIFYING, "done"): MANAGEABLE,
        (VERIFYING, "fail"): ENROLL,
        (MANAGEABLE, "manage"): VERIFYING,  # re-verify after changing driver_info
        (MANAGEABLE, "provide"): CLEANING,
        (MANAGEABLE, "inspect"): INSPECTING,
        (INSPECTING, "done"): MANAGEABLE,
        (INSPECTING, "fail"): INSPECT_FAILED,
        (INSPECTING, "wait"): INSPECT_WAIT,
        (INSPECT_WAIT, "resume"): INSPECTING,
        (INSPECT_WAIT, "fail"): INSPECT_FAILED,
        (INSPECT_FAILED, "inspect"): INSPECTING,
        (INSPECT_FAILED, "manage"): MANAGEABLE,
        (CLEANING, "done"): AVAILABLE,
        (CLEANING, "wait"): CLEAN_WAIT,
        (CLEANING, "fail"): CLEAN_FAILED,
        (CLEAN_WAIT, "resume"): CLEANING,
        (CLEAN_WAIT, "fail"): CLEAN_FAILED,
        (CLEAN_FAILED, "provide"): CLEANING,
        (CLEAN_FAILED, "manage"): MANAGEABLE,
        (AVAILABLE, "manage"): MANAGEABLE,
        (AVAILABLE, "deploy"): DEPLOYING,
        (DEPLOYING, "done"): ACTIVE,
        (DEPLOYING, "wait"): DEPLOY_WAIT,
        (DEPLOYING, "fail"): DEPLOY_FAILED,
        (DEPLOY_WAIT, "resume"): DEPLOYING,
        (DEPLOY_WAIT, "fail"): DEPLOY_FAILED,
        (DEPLOY_FAILED, "deploy"): DEPLOYING,
        (DEPLOY_FAILED, "undeploy"): DELETING,
        (ACTIVE, "undeploy"): DELETING,
        (DELETING, "done"): CLEANING,
        (DELETING, "fail"): CLEAN_FAILED,
    },
    targets={
        VERIFYING: MANAGEABLE,
        INSPECTING: MANAGEABLE,
        INSPECT_WAIT: MANAGEABLE,
        CLEANING: AVAILABLE,
        CLEAN_WAIT: AVAILABLE,
        DEPLOYING: ACTIVE,
        DEPLOY_WAIT: ACTIVE,
        DELETING: AVAILABLE,
    },
    internal_events=frozenset({"done", "fail", "wait", "resume"}),
)

# States in which a worker is (or should be) doing something; the reconciler watches them.
NODE_TRANSIENT = frozenset(
    {VERIFYING, INSPECTING, INSPECT_WAIT, CLEANING, CLEAN_WAIT, DEPLOYING, DEPLOY_WAIT, DELETING}
)
# Transient states in which no job runs: an agent is expected to call back.
NODE_WAITING = frozenset({CLEAN_WAIT, DEPLOY_WAIT, INSPECT_WAIT})
# Where a lost job leaves a node (fired with "fail").
NODE_STABLE = frozenset(
    {ENROLL, MANAGEABLE, AVAILABLE, ACTIVE, DEPLOY_FAILED, CLEAN_FAILED, INSPECT_FAILED}
)

# The only states in which a node may be bound to an instance (``instance_id`` set):
# enforced by ``lifecycle.fire_node`` and by the database (CHECK ck_nodes_bound_state).
NODE_BOUND = frozenset({DEPLOYING, DEPLOY_WAIT, DEPLOY_FAILED, ACTIVE, DELETING, CLEAN_FAILED})
NODE_BOUND_SQL = "instance_id IS NULL OR provision_state IN ({})".format(
    ", ".join(f"'{state}'" for state in sorted(NODE_BOUND))
)

POWER_ON = "power on"
POWER_OFF = "power off"
REBOOT = "rebooting"
SOFT_POWER_OFF = "soft power off"
POWER_TARGETS = (POWER_ON, POWER_OFF, REBOOT, SOFT_POWER_OFF)

BUILD = "BUILD"
INSTANCE_ACTIVE = "ACTIVE"
INSTANCE_DELETING = "DELETING"
DELETED = "DELETED"
ERROR = "ERROR"

INSTANCE_FSM = StateMachine(
    name="instance",
    transitions={
        (BUILD, "active"): INSTANCE_ACTIVE,
        (BUILD, "error"): ERROR,
        (BUILD, "delete"): INSTANCE_DELETING,
        (INSTANCE_ACTIVE, "delete"): INSTANCE_DELETING,
        (INSTANCE_ACTIVE, "error"): ERROR,
        (ERROR, "delete"): INSTANCE_DELETING,
        (INSTANCE_DELETING, "deleted"): DELETED,
        (INSTANCE_DELETING, "error"): ERROR,
    },
    internal_events=frozenset({"active", "error", "deleted"}),
)
