"""A stored plan position survives an upgrade that adds or moves steps."""

from __future__ import annotations

from workers.runner import resume_position
from workers.steps import PLANS, Step


def _noop(task: object, env: object) -> None:
    return None


def test_step_names_are_unique_in_every_plan() -> None:
    for plan, steps in PLANS.items():
        names = [s.name for s in steps]
        assert len(names) == len(set(names)), plan


def test_resume_after_the_named_step_even_if_steps_were_added_before_it() -> None:
    old = (Step("power_on", _noop), Step("write_image", _noop), Step("reboot", _noop))
    new = (Step("prepare_image", _noop), *old)
    stored = {"plan": "deploy", "plan_step": 2, "plan_last": "write_image"}
    assert resume_position(stored, "deploy", old) == 2
    assert resume_position(stored, "deploy", new) == 3  # "reboot" in both


def test_positions_stored_before_names_and_other_plans() -> None:
    steps = (Step("a", _noop), Step("b", _noop))
    assert resume_position({"plan": "deploy", "plan_step": 1}, "deploy", steps) == 1
    assert resume_position({"plan": "clean", "plan_step": 1}, "deploy", steps) == 0
    assert resume_position({}, "deploy", steps) == 0
    gone = {"plan": "deploy", "plan_step": 1, "plan_last": "renamed"}
    assert resume_position(gone, "deploy", steps) == 1
