"""The heterogeneous-agent sequential update scheme shared by the HA learners.

Each iteration agents are updated one at a time in an order drawn afresh (or fixed); each
later agent receives what the earlier ones changed. For the on-policy HA learners (HAPPO,
HATRPO, HAA2C) that is the "factor": the per-sample product of the earlier agents' probability
ratios new/old on the rollout actions, which multiplies the next agent's advantage. For the
off-policy HA learners (HADDPG, HATD3, HASAC) it is the earlier agents' updated actions, which
enter the joint action the next agent's loss is evaluated on.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch


def agent_order(n_agents: int, rng: np.random.Generator, fixed: bool) -> list[int]:
    """0..n-1 when `fixed`, else a fresh random permutation from the learner's own RNG."""
    return list(range(n_agents)) if fixed else [int(i) for i in rng.permutation(n_agents)]


def agent_diagnostics(infos: dict[int, dict[str, float]], order: list[int]) -> dict[str, float]:
    """Per-agent diagnostics as `agent<i>/<key>` columns, plus the order's first agent."""
    flat = {f"agent{i}/{k}": v for i, info in infos.items() for k, v in info.items()}
    flat["first_agent"] = float(order[0])
    return flat


def aggregate_ratio(log_ratio: torch.Tensor, how: str) -> torch.Tensor:
    """Per-sample importance ratio [N] from per-dimension log-ratios [N, d].

    prod: the joint ratio exp(sum d); mean: the mean of the per-dimension ratios.
    """
    if how == "prod":
        return log_ratio.sum(-1).exp()
    if how == "mean":
        return log_ratio.exp().mean(-1)
    raise ValueError(f"unknown action_aggregation {how!r}; valid: prod, mean")


def factor_sequential_update(
    order: list[int],
    sample_shape: tuple[int, ...],
    device: torch.device,
    log_prob: Callable[[int], torch.Tensor],
    update_agent: Callable[[int, torch.Tensor], dict[str, float]],
    aggregation: str,
) -> tuple[dict[int, dict[str, float]], torch.Tensor]:
    """Update agents in `order`, threading the factor through.

    log_prob(i): agent i's per-dimension log-probs of its rollout actions under its current
    parameters (`[*sample_shape, d]`, no grad). update_agent(i, factor): one agent's update given
    the product of earlier agents' ratios (`[*sample_shape]`, detached); returns its diagnostics.
    Returns (diagnostics per agent, final factor).
    """
    factor = torch.ones(sample_shape, device=device)
    infos: dict[int, dict[str, float]] = {}
    for i in order:
        before = log_prob(i)
        infos[i] = update_agent(i, factor)
        after = log_prob(i)
        factor = factor * aggregate_ratio(after - before, aggregation)
    return infos, factor


def action_sequential_update(
    order: list[int],
    joint_actions: list[torch.Tensor | None],
    update_agent: Callable[[int, list[torch.Tensor | None]], tuple[dict[str, float], torch.Tensor | None]],
) -> dict[int, dict[str, float]]:
    """Update agents in `order` against a joint action that later agents see updated.

    update_agent(i, joint): agent i's update, where `joint` holds every agent's (detached)
    action in agent-index order (None where nobody reads it: the first agent's own); returns
    (diagnostics, agent i's new action or None). A returned action replaces entry i for the agents
    after it (the HA scheme); None leaves the entry as it was, so every agent is updated against
    the same actions (the simultaneous MA update).
    """
    joint = list(joint_actions)
    infos: dict[int, dict[str, float]] = {}
    for i in order:
        infos[i], new_action = update_agent(i, joint)
        if new_action is not None:
            joint[i] = new_action.detach()
    return infos
