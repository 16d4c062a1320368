"""Valid MaMuJoCo scenarios and agent partitions, plus the partitions harl adds on top.

The fixed partitions mirror the `partitioning == ...` branches of
`gymnasium_robotics.envs.multiagent_mujoco.obsk.get_parts_and_edges` (gymnasium-robotics 1.4.2);
`tests/test_envs.py` constructs every one of them so a package upgrade that drops one fails loudly.
"""

from __future__ import annotations

import re
from typing import Any

from envs.validation import invalid_choice

# Partitions the package builds itself from `agent_conf`.
PACKAGE_PARTITIONS: dict[str, tuple[str, ...]] = {
    "HalfCheetah": ("2x3", "6x1"),
    "Ant": ("2x4", "2x4d", "4x2"),
    "Hopper": ("3x1",),
    "Walker2d": ("2x3",),
    "Swimmer": ("2x1",),
    "Reacher": ("2x1",),
    "Pusher": ("3p",),
    "Humanoid": ("9|8",),
    "HumanoidStandup": ("9|8",),
}
# Left out: CoupledHalfCheetah ("1p1") fails inside the package with MuJoCo 4 (its tendon-Jacobian
# observation indexes `data.ten_J`, whose layout changed); InvertedPendulum/InvertedDoublePendulum
# have no multi-agent graph at all.

# Partitions the package lacks but the HARL papers use (Humanoid 17x1, Walker2d 6x1, Ant 8x1):
# one actuated joint per agent, built from the package's own single-agent graph and passed as
# `agent_factorization`.
ONE_JOINT_PER_AGENT: dict[str, str] = {
    "Humanoid": "17x1",
    "HumanoidStandup": "17x1",
    "Walker2d": "6x1",
    "Ant": "8x1",
}

# Scenarios whose body is generated from the partition: any "<agents>x<segments per agent>".
SEGMENT_SCENARIOS: tuple[str, ...] = ("ManySegmentSwimmer", "ManySegmentAnt")
_SEGMENT_CONF = re.compile(r"^([1-9]\d*)x([1-9]\d*)$")
SEGMENT_CONF_HINT = "<agents>x<segments per agent> (e.g. 2x3)"

SCENARIOS: tuple[str, ...] = tuple(PACKAGE_PARTITIONS) + SEGMENT_SCENARIOS


def valid_partitions(scenario: str) -> list[str]:
    """The agent_conf values accepted for `scenario` (a pattern hint for segment scenarios)."""
    if scenario in SEGMENT_SCENARIOS:
        return [SEGMENT_CONF_HINT]
    extra = [ONE_JOINT_PER_AGENT[scenario]] if scenario in ONE_JOINT_PER_AGENT else []
    return list(PACKAGE_PARTITIONS[scenario]) + extra


def check_scenario_and_partition(scenario: str, agent_conf: str) -> None:
    """Raise a ValueError listing the valid choices if the pair is not supported."""
    if scenario not in SCENARIOS:
        raise invalid_choice("MaMuJoCo scenario", scenario, SCENARIOS)
    if scenario in SEGMENT_SCENARIOS:
        if not isinstance(agent_conf, str) or not _SEGMENT_CONF.match(agent_conf):
            raise invalid_choice(f"agent_conf for {scenario}", agent_conf, valid_partitions(scenario))
    elif agent_conf not in valid_partitions(scenario):
        raise invalid_choice(f"agent_conf for {scenario}", agent_conf, valid_partitions(scenario))


def segment_count(agent_conf: str) -> int:
    """Total body segments of a segment scenario's "<agents>x<segments>" partition."""
    match = _SEGMENT_CONF.match(agent_conf)
    if match is None:
        raise ValueError(f"agent_conf {agent_conf!r} is not <agents>x<segments per agent>")
    agents, per_agent = match.groups()
    return int(agents) * int(per_agent)


def custom_factorization(scenario: str, agent_conf: str) -> dict[str, Any] | None:
    """The `agent_factorization` for partitions harl adds, or None for the package's own."""
    if ONE_JOINT_PER_AGENT.get(scenario) != agent_conf:
        return None
    from gymnasium_robotics.envs.multiagent_mujoco.obsk import get_parts_and_edges

    (whole_body,), edges, global_nodes = get_parts_and_edges(scenario, None)
    # Sorted by actuator id so agent i drives actuator i of the single-agent env.
    joints = sorted(whole_body, key=lambda node: node.act_ids)
    return {"partition": [(joint,) for joint in joints], "edges": edges, "globals": global_nodes}
