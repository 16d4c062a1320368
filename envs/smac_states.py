"""The critic states of the HARL reference's SMAC env (`harl/envs/smac/StarCraft2_Env.py` with its
`smac_state_config/EP.yaml` and `FP.yaml`), computed from a running SMAC `StarCraft2Env`.

The reference modified SMAC's env class; harl drives the original package and builds the same
vectors from what that class exposes (its unit dicts `agents`/`enemies`, `last_action`, the map
geometry, and its helpers `get_avail_agent_actions`, `unit_sight_range`, `unit_max_cooldown`,
`unit_max_shield`, `get_unit_type_id`, `get_surrounding_pathing`, `get_surrounding_height`), in the
reference's layout and with the settings of its two state configs:

- EP ("environment provided"), one state shared by all agents: per ally [health, cooldown (a
  medivac's energy on MMM maps), x and y from the map centre, shield, unit type one-hot, last
  action one-hot], per enemy [health, x and y from the centre, shield, unit type one-hot], per
  ally its movement state [available actions, 8 pathing values and 9 terrain heights around it],
  the episode's progress (step / limit), and 5 map numbers [map_x, map_y, playable width and
  height, sight range];
- FP ("feature pruned"), one state per agent, centred on that agent: per other ally [visible,
  distance, relative x and y (over the sight range), cooldown, health, shield, x and y from the
  centre, unit type one-hot, last action one-hot], per enemy [can be attacked, distance, relative
  x and y, visible, health, shield, unit type one-hot, x and y from the centre], the agent's 4
  movement flags, its own [1, 0, 0, 0, health, shield, x and y from the centre, unit type
  one-hot, last action one-hot], then its one-hot id. A dead agent's FP state is zeros but for
  the id. Unlike an observation, it sees every living unit, however far.

Shields appear for Protoss units only and unit types on maps with several types, as in SMAC.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

STATE_TYPES = ("EP", "FP")
N_PATHING, N_HEIGHT = 8, 9  # SMAC's surrounding pathing points and height points (with its own)
N_INFO = 5  # EP's map numbers


# ---------------------------------------------------------------- sizes (known before the game starts)
def _sizes(env: Any) -> dict[str, int]:
    types, n_actions = int(env.unit_type_bits), int(env.n_actions)
    shield_al, shield_en = int(env.shield_bits_ally), int(env.shield_bits_enemy)
    return {
        # EP rows
        "ep_ally": 2 + 2 + shield_al + types + n_actions,
        "ep_enemy": 1 + 2 + shield_en + types,
        "ep_move": n_actions + N_PATHING + N_HEIGHT,
        # FP parts
        "fp_ally": 5 + 1 + shield_al + 2 + types + n_actions,
        "fp_enemy": 5 + 1 + shield_en + types + 2,
        "fp_move": int(env.n_actions_move),
        "fp_own": 4 + 1 + shield_al + 2 + types + n_actions,
    }


def global_state_size(env: Any) -> int:
    """Length of the EP state of `env` (a SMAC StarCraft2Env, launched or not)."""
    s, n, m = _sizes(env), int(env.n_agents), int(env.n_enemies)
    return n * s["ep_ally"] + m * s["ep_enemy"] + n * s["ep_move"] + 1 + N_INFO


def agent_state_size(env: Any) -> int:
    """Length of one agent's FP state."""
    s, n, m = _sizes(env), int(env.n_agents), int(env.n_enemies)
    return (n - 1) * s["fp_ally"] + m * s["fp_enemy"] + s["fp_move"] + s["fp_own"] + n


# ---------------------------------------------------------------- shared pieces
def _centre_xy(env: Any, unit: Any) -> tuple[float, float]:
    """The unit's position from the map centre, over the playable width and height."""
    return (
        (unit.pos.x - env.map_x / 2) / env.max_distance_x,
        (unit.pos.y - env.map_y / 2) / env.max_distance_y,
    )


def _cooldown(env: Any, unit: Any) -> float:
    """Weapon cooldown over its maximum; a medivac's energy on MMM maps."""
    max_cd = env.unit_max_cooldown(unit)
    if env.map_type == "MMM" and unit.unit_type == env.medivac_id:
        return unit.energy / max_cd
    return unit.weapon_cooldown / max_cd


def _distance(x1: float, y1: float, x2: float, y2: float) -> float:
    return math.hypot(x2 - x1, y2 - y1)


# ---------------------------------------------------------------- EP
def global_state(env: Any) -> np.ndarray:
    """The reference's EP state (`get_global_state` with EP.yaml) of a launched env."""
    s, n, m = _sizes(env), int(env.n_agents), int(env.n_enemies)
    types, shield_al, shield_en = (
        int(env.unit_type_bits),
        int(env.shield_bits_ally),
        int(env.shield_bits_enemy),
    )
    ally = np.zeros((n, s["ep_ally"]), np.float32)
    enemy = np.zeros((m, s["ep_enemy"]), np.float32)
    move = np.zeros((n, s["ep_move"]), np.float32)

    n_actions = int(env.n_actions)
    for i in range(n):  # every agent, dead ones too (the package keeps their last unit record)
        unit = env.get_unit_by_id(i)
        move[i, :n_actions] = env.get_avail_agent_actions(i)
        move[i, n_actions : n_actions + N_PATHING] = env.get_surrounding_pathing(unit)
        move[i, n_actions + N_PATHING :] = env.get_surrounding_height(unit)

    for i, unit in env.agents.items():
        if unit.health <= 0:
            continue
        row = [unit.health / unit.health_max, _cooldown(env, unit), *_centre_xy(env, unit)]
        if shield_al:
            row.append(unit.shield / env.unit_max_shield(unit))
        ally[i, : len(row)] = row
        if types:
            ally[i, len(row) + env.get_unit_type_id(unit, True)] = 1
        ally[i, len(row) + types :] = env.last_action[i]

    for e, unit in env.enemies.items():
        if unit.health <= 0:
            continue
        row = [unit.health / unit.health_max, *_centre_xy(env, unit)]
        if shield_en:
            row.append(unit.shield / env.unit_max_shield(unit))
        enemy[e, : len(row)] = row
        if types:
            enemy[e, len(row) + env.get_unit_type_id(unit, False)] = 1

    progress = np.float32(env._episode_steps / env.episode_limit)
    info = np.array(
        [env.map_x, env.map_y, env.max_distance_x, env.max_distance_y, env.unit_sight_range(0)], np.float32
    )
    return np.concatenate([ally.ravel(), enemy.ravel(), move.ravel(), [progress], info]).astype(np.float32)


# ---------------------------------------------------------------- FP
def agent_state(env: Any, agent_id: int) -> np.ndarray:
    """The reference's FP state (`get_state_agent` with FP.yaml) of agent `agent_id`."""
    s, n, m = _sizes(env), int(env.n_agents), int(env.n_enemies)
    types, shield_al, shield_en = (
        int(env.unit_type_bits),
        int(env.shield_bits_ally),
        int(env.shield_bits_enemy),
    )
    ally = np.zeros((n - 1, s["fp_ally"]), np.float32)
    enemy = np.zeros((m, s["fp_enemy"]), np.float32)
    move = np.zeros(s["fp_move"], np.float32)
    own = np.zeros(s["fp_own"], np.float32)
    agent_id_one_hot = np.zeros(n, np.float32)
    agent_id_one_hot[agent_id] = 1

    unit = env.get_unit_by_id(agent_id)
    if unit.health > 0:
        x, y = unit.pos.x, unit.pos.y
        sight = env.unit_sight_range(agent_id)
        avail = env.get_avail_agent_actions(agent_id)
        move[:] = avail[2 : 2 + s["fp_move"]]  # north, south, east, west

        for e, e_unit in env.enemies.items():
            if e_unit.health <= 0:
                continue
            dist = _distance(x, y, e_unit.pos.x, e_unit.pos.y)
            row = [
                avail[env.n_actions_no_attack + e],
                dist / sight,
                (e_unit.pos.x - x) / sight,
                (e_unit.pos.y - y) / sight,
                float(dist < sight),
                e_unit.health / e_unit.health_max,
            ]
            if shield_en:
                row.append(e_unit.shield / env.unit_max_shield(e_unit))
            enemy[e, : len(row)] = row
            if types:
                enemy[e, len(row) + env.get_unit_type_id(e_unit, False)] = 1
            enemy[e, len(row) + types :] = _centre_xy(env, e_unit)

        others = [i for i in range(n) if i != agent_id]
        for k, i in enumerate(others):
            a_unit = env.get_unit_by_id(i)
            if a_unit.health <= 0:
                continue
            dist = _distance(x, y, a_unit.pos.x, a_unit.pos.y)
            row = [
                float(dist < sight),
                dist / sight,
                (a_unit.pos.x - x) / sight,
                (a_unit.pos.y - y) / sight,
                _cooldown(env, a_unit),
                a_unit.health / a_unit.health_max,
            ]
            if shield_al:
                row.append(a_unit.shield / env.unit_max_shield(a_unit))
            row.extend(_centre_xy(env, a_unit))
            ally[k, : len(row)] = row
            if types:
                ally[k, len(row) + env.get_unit_type_id(a_unit, True)] = 1
            ally[k, len(row) + types :] = env.last_action[i]

        row = [1.0, 0.0, 0.0, 0.0, unit.health / unit.health_max]
        if shield_al:
            row.append(unit.shield / env.unit_max_shield(unit))
        row.extend(_centre_xy(env, unit))
        own[: len(row)] = row
        if types:
            own[len(row) + env.get_unit_type_id(unit, True)] = 1
        own[len(row) + types :] = env.last_action[agent_id]

    return np.concatenate([ally.ravel(), enemy.ravel(), move, own, agent_id_one_hot]).astype(np.float32)


def agent_states(env: Any) -> np.ndarray:
    """Every agent's FP state, [n_agents, agent_state_size(env)]."""
    return np.stack([agent_state(env, i) for i in range(int(env.n_agents))])
