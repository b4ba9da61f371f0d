"""The node and instance transition tables (portal/core/states.py) and the FSM engine."""

from __future__ import annotations

from collections import deque
from typing import Any

import pytest

from portal.core import lifecycle
from portal.core.fsm import InvalidTransition, StateMachine
from portal.core.models import Event, Instance, Node
from portal.core.states import (
    ACTIVE,
    AVAILABLE,
    BUILD,
    CLEAN_FAILED,
    CLEAN_WAIT,
    CLEANING,
    DELETED,
    DELETING,
    DEPLOY_FAILED,
    DEPLOY_WAIT,
    DEPLOYING,
    ENROLL,
    ERROR,
    INSPECT_FAILED,
    INSPECT_WAIT,
    INSPECTING,
    INSTANCE_ACTIVE,
    INSTANCE_DELETING,
    INSTANCE_FSM,
    MANAGEABLE,
    NODE_FSM,
    NODE_STABLE,
    NODE_TRANSIENT,
    VERIFYING,
)

# Every arrow drawn in the docstring of portal/core/states.py, in reading order.
DOCUMENTED_NODE_PATHS = [
    (ENROLL, "manage", VERIFYING),
    (VERIFYING, "done", MANAGEABLE),
    (MANAGEABLE, "provide", CLEANING),
    (CLEANING, "done", AVAILABLE),
    (AVAILABLE, "deploy", DEPLOYING),
    (DEPLOYING, "done", ACTIVE),
    (ACTIVE, "undeploy", DELETING),
    (DELETING, "done", CLEANING),
    (DEPLOYING, "wait", DEPLOY_WAIT),
    (DEPLOY_WAIT, "resume", DEPLOYING),
    (CLEANING, "wait", CLEAN_WAIT),
    (CLEAN_WAIT, "resume", CLEANING),
    (VERIFYING, "fail", ENROLL),
    (DEPLOYING, "fail", DEPLOY_FAILED),
    (DEPLOY_WAIT, "fail", DEPLOY_FAILED),
    (CLEANING, "fail", CLEAN_FAILED),
    (CLEAN_WAIT, "fail", CLEAN_FAILED),
    (DELETING, "fail", CLEAN_FAILED),
    (DEPLOY_FAILED, "deploy", DEPLOYING),
    (DEPLOY_FAILED, "undeploy", DELETING),
    (CLEAN_FAILED, "provide", CLEANING),
    (CLEAN_FAILED, "manage", MANAGEABLE),
    (MANAGEABLE, "inspect", INSPECTING),
    (INSPECTING, "done", MANAGEABLE),
    (INSPECTING, "fail", INSPECT_FAILED),
    (INSPECTING, "wait", INSPECT_WAIT),
    (INSPECT_WAIT, "resume", INSPECTING),
    (INSPECT_WAIT, "fail", INSPECT_FAILED),
    (INSPECT_FAILED, "inspect", INSPECTING),
    (INSPECT_FAILED, "manage", MANAGEABLE),
]
# In the table but not drawn in the docstring (commented in the table itself).
UNDRAWN_NODE_PATHS = [
    (MANAGEABLE, "manage", VERIFYING),  # re-verify after changing driver_info
    (AVAILABLE, "manage", MANAGEABLE),  # take a node out of the pool
]
USER_ACTIONS = {"manage", "provide", "deploy", "undeploy", "inspect"}
INTERNAL = {"done", "fail", "wait", "resume"}


# -- the node table ---------------------------------------------------------------------


@pytest.mark.parametrize(("state", "event", "after"), DOCUMENTED_NODE_PATHS + UNDRAWN_NODE_PATHS)
def test_every_node_path_leads_where_documented(state: str, event: str, after: str) -> None:
    assert NODE_FSM.next_state(state, event) == after


def test_node_table_is_exactly_the_documented_paths() -> None:
    table = {(s, e, t) for (s, e), t in NODE_FSM.transitions.items()}
    assert table == set(DOCUMENTED_NODE_PATHS) | set(UNDRAWN_NODE_PATHS)


def test_happy_path_from_enroll_to_active_and_back_to_the_pool() -> None:
    state = ENROLL
    visited = [state]
    for event in ("manage", "done", "provide", "done", "deploy", "done", "undeploy", "done"):
        state = NODE_FSM.next_state(state, event)
        visited.append(state)
    assert visited == [
        ENROLL,
        VERIFYING,
        MANAGEABLE,
        CLEANING,
        AVAILABLE,
        DEPLOYING,
        ACTIVE,
        DELETING,
        CLEANING,
    ]
    assert NODE_FSM.next_state(state, "done") == AVAILABLE


def test_every_node_state_is_reachable_from_enroll() -> None:
    seen, todo = {ENROLL}, deque([ENROLL])
    while todo:
        state = todo.popleft()
        for (s, _), after in NODE_FSM.transitions.items():
            if s == state and after not in seen:
                seen.add(after)
                todo.append(after)
    assert seen == NODE_FSM.states


def test_transient_and_stable_partition_the_node_states() -> None:
    assert NODE_FSM.states == NODE_TRANSIENT | NODE_STABLE
    assert not NODE_TRANSIENT & NODE_STABLE


@pytest.mark.parametrize("state", sorted(NODE_TRANSIENT))
def test_a_lost_job_can_fail_every_transient_state_into_a_stable_one(state: str) -> None:
    assert NODE_FSM.next_state(state, "fail") in NODE_STABLE


@pytest.mark.parametrize("state", sorted(NODE_TRANSIENT))
def test_transient_states_accept_no_user_action(state: str) -> None:
    assert NODE_FSM.allowed(state) == []
    assert set(NODE_FSM.allowed(state, include_internal=True)) <= INTERNAL


@pytest.mark.parametrize("state", sorted(NODE_STABLE))
def test_internal_events_never_start_from_a_stable_state(state: str) -> None:
    assert set(NODE_FSM.allowed(state, include_internal=True)) <= USER_ACTIONS
    assert NODE_FSM.allowed(state) == NODE_FSM.allowed(state, include_internal=True)


@pytest.mark.parametrize(
    ("state", "user_visible", "with_internal"),
    [
        (ENROLL, ["manage"], ["manage"]),
        (MANAGEABLE, ["inspect", "manage", "provide"], ["inspect", "manage", "provide"]),
        (INSPECT_FAILED, ["inspect", "manage"], ["inspect", "manage"]),
        (INSPECTING, [], ["done", "fail", "wait"]),
        (INSPECT_WAIT, [], ["fail", "resume"]),
        (AVAILABLE, ["deploy", "manage"], ["deploy", "manage"]),
        (ACTIVE, ["undeploy"], ["undeploy"]),
        (DEPLOY_FAILED, ["deploy", "undeploy"], ["deploy", "undeploy"]),
        (CLEAN_FAILED, ["manage", "provide"], ["manage", "provide"]),
        (VERIFYING, [], ["done", "fail"]),
        (CLEANING, [], ["done", "fail", "wait"]),
        (CLEAN_WAIT, [], ["fail", "resume"]),
        (DEPLOYING, [], ["done", "fail", "wait"]),
        (DEPLOY_WAIT, [], ["fail", "resume"]),
        (DELETING, [], ["done", "fail"]),
    ],
)
def test_allowed_hides_internal_events_from_users(
    state: str, user_visible: list[str], with_internal: list[str]
) -> None:
    assert NODE_FSM.allowed(state) == user_visible
    assert NODE_FSM.allowed(state, include_internal=True) == with_internal


@pytest.mark.parametrize(
    ("state", "event", "allowed"),
    [
        (ENROLL, "provide", ["manage"]),
        (ENROLL, "deploy", ["manage"]),
        (ENROLL, "done", ["manage"]),
        (ACTIVE, "provide", ["undeploy"]),
        (ACTIVE, "deploy", ["undeploy"]),
        (AVAILABLE, "undeploy", ["deploy", "manage"]),
        (DEPLOYING, "undeploy", ["done", "fail", "wait"]),
        (CLEAN_WAIT, "done", ["fail", "resume"]),
    ],
)
def test_invalid_node_transition_names_what_is_allowed(
    state: str, event: str, allowed: list[str]
) -> None:
    with pytest.raises(InvalidTransition) as info:
        NODE_FSM.next_state(state, event)
    exc = info.value
    assert (exc.machine, exc.state, exc.event, exc.allowed) == ("node", state, event, allowed)
    assert f"cannot '{event}' a node in state '{state}'" in str(exc)
    assert f"allowed: {', '.join(allowed)}" in str(exc)


def test_invalid_transition_from_an_unknown_state_allows_none() -> None:
    with pytest.raises(InvalidTransition) as info:
        NODE_FSM.next_state("on fire", "manage")
    assert info.value.allowed == []
    assert str(info.value).endswith("allowed: none")


@pytest.mark.parametrize(
    ("state", "target"),
    [
        (VERIFYING, MANAGEABLE),
        (CLEANING, AVAILABLE),
        (CLEAN_WAIT, AVAILABLE),
        (DEPLOYING, ACTIVE),
        (DEPLOY_WAIT, ACTIVE),
        (DELETING, AVAILABLE),
    ],
)
def test_transient_states_show_where_they_are_heading(state: str, target: str) -> None:
    assert NODE_FSM.target_of(state) == target


@pytest.mark.parametrize("state", sorted(NODE_STABLE))
def test_stable_states_have_no_target(state: str) -> None:
    assert NODE_FSM.target_of(state) is None


def test_targets_are_declared_for_exactly_the_transient_states() -> None:
    assert set(NODE_FSM.targets) == NODE_TRANSIENT
    assert set(NODE_FSM.targets.values()) <= NODE_STABLE


def test_state_machine_engine_on_a_toy_table() -> None:
    door = StateMachine(
        name="door",
        transitions={("shut", "open"): "open", ("open", "shut"): "shut", ("open", "slam"): "shut"},
        internal_events=frozenset({"slam"}),
    )
    assert door.states == {"open", "shut"}
    assert door.allowed("open") == ["shut"]
    assert door.allowed("open", include_internal=True) == ["shut", "slam"]
    assert door.target_of("open") is None
    with pytest.raises(InvalidTransition, match="cannot 'open' a door in state 'open'"):
        door.next_state("open", "open")


# -- lifecycle.fire_node / fire_instance (state, target, error and event together) ---------


class RecordingSession:
    """Just enough of a Session for lifecycle: it collects what would be written."""

    def __init__(self) -> None:
        self.added: list[Any] = []

    def add(self, obj: Any) -> None:
        self.added.append(obj)


def test_fire_node_writes_state_target_and_event_together() -> None:
    s = RecordingSession()
    node = Node(id="n1", provision_state=ENROLL, owner="p1", last_error="old failure")
    assert lifecycle.fire_node(s, node, "manage", actor="user:root") == VERIFYING  # type: ignore[arg-type]
    assert node.provision_state == VERIFYING
    assert node.target_provision_state == MANAGEABLE
    assert node.provision_updated_at is not None
    assert node.last_error is None  # a user action starts with a clean slate
    (event,) = s.added
    assert isinstance(event, Event)
    assert (event.type, event.resource_id, event.project_id, event.actor) == (
        "node.provision_state",
        "n1",
        "p1",
        "user:root",
    )
    assert event.payload["previous"] == ENROLL and event.payload["state"] == VERIFYING
    assert event.payload["target"] == MANAGEABLE and event.payload["event"] == "manage"


def test_fire_node_failure_records_the_error_and_clears_the_target() -> None:
    s = RecordingSession()
    node = Node(id="n1", provision_state=DEPLOYING, target_provision_state=ACTIVE)
    lifecycle.fire_node(s, node, "fail", error="disk on fire")  # type: ignore[arg-type]
    assert node.provision_state == DEPLOY_FAILED
    assert node.target_provision_state is None
    assert node.last_error == "disk on fire"
    assert s.added[0].payload["error"] == "disk on fire"
    assert s.added[0].actor == "system"


def test_fire_node_rejects_an_invalid_event_without_touching_the_node() -> None:
    s = RecordingSession()
    node = Node(id="n1", provision_state=ENROLL, target_provision_state=None)
    with pytest.raises(InvalidTransition):
        lifecycle.fire_node(s, node, "provide")  # type: ignore[arg-type]
    assert node.provision_state == ENROLL and node.target_provision_state is None
    assert s.added == []


# -- the instance table -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "event", "after"),
    [
        (BUILD, "active", INSTANCE_ACTIVE),
        (BUILD, "error", ERROR),
        (BUILD, "delete", INSTANCE_DELETING),
        (INSTANCE_ACTIVE, "delete", INSTANCE_DELETING),
        (INSTANCE_ACTIVE, "error", ERROR),
        (ERROR, "delete", INSTANCE_DELETING),
        (INSTANCE_DELETING, "deleted", DELETED),
        (INSTANCE_DELETING, "error", ERROR),
    ],
)
def test_instance_transitions(state: str, event: str, after: str) -> None:
    assert INSTANCE_FSM.next_state(state, event) == after


def test_instance_table_has_no_other_transitions() -> None:
    assert len(INSTANCE_FSM.transitions) == 8
    assert INSTANCE_FSM.states == {BUILD, INSTANCE_ACTIVE, INSTANCE_DELETING, DELETED, ERROR}


@pytest.mark.parametrize("state", [BUILD, INSTANCE_ACTIVE, ERROR])
def test_users_may_only_delete_a_live_instance(state: str) -> None:
    assert INSTANCE_FSM.allowed(state) == ["delete"]


def test_deleted_is_terminal_and_deleting_is_not_user_actionable() -> None:
    assert INSTANCE_FSM.allowed(DELETED, include_internal=True) == []
    assert INSTANCE_FSM.allowed(INSTANCE_DELETING) == []
    assert INSTANCE_FSM.allowed(INSTANCE_DELETING, include_internal=True) == ["deleted", "error"]
    with pytest.raises(InvalidTransition) as info:
        INSTANCE_FSM.next_state(DELETED, "delete")
    assert info.value.allowed == [] and info.value.machine == "instance"
    with pytest.raises(InvalidTransition) as info:
        INSTANCE_FSM.next_state(INSTANCE_DELETING, "delete")
    assert info.value.allowed == ["deleted", "error"]


def test_instance_has_no_target_states() -> None:
    assert all(INSTANCE_FSM.target_of(s) is None for s in INSTANCE_FSM.states)


def test_fire_instance_stamps_launch_and_termination() -> None:
    s = RecordingSession()
    inst = Instance(id="i1", project_id="p1", status=BUILD, progress=40)
    lifecycle.fire_instance(s, inst, "active")  # type: ignore[arg-type]
    assert inst.status == INSTANCE_ACTIVE and inst.progress == 100
    assert inst.launched_at is not None and inst.terminated_at is None
    lifecycle.fire_instance(s, inst, "delete", task_state="deleting")  # type: ignore[arg-type]
    assert inst.status == INSTANCE_DELETING and inst.task_state == "deleting"
    lifecycle.fire_instance(s, inst, "deleted")  # type: ignore[arg-type]
    assert inst.status == DELETED and inst.terminated_at is not None and inst.task_state is None
    assert [(e.payload["previous"], e.payload["status"]) for e in s.added] == [
        (BUILD, INSTANCE_ACTIVE),
        (INSTANCE_ACTIVE, INSTANCE_DELETING),
        (INSTANCE_DELETING, DELETED),
    ]
    assert {e.project_id for e in s.added} == {"p1"}


def test_fire_instance_error_keeps_the_fault_and_records_its_message() -> None:
    s = RecordingSession()
    inst = Instance(id="i1", project_id="p1", status=BUILD)
    fault = {"code": "no_valid_host", "message": "No valid host", "details": {}}
    lifecycle.fire_instance(s, inst, "error", fault=fault)  # type: ignore[arg-type]
    assert inst.status == ERROR and inst.fault == fault
    assert s.added[0].payload["fault"] == "No valid host"
    with pytest.raises(InvalidTransition):
        lifecycle.fire_instance(s, inst, "active")  # type: ignore[arg-type]
    assert inst.status == ERROR and len(s.added) == 1
