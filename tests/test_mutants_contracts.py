"""Small contracts that mutation testing found unpinned: who a non-finite loss is blamed on,
target networks that never take gradients, and episode batches moved between devices."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from harl.algos.base import NonFiniteLossError, check_finite
from harl.algos.off_policy.base import frozen_copy
from harl.buffers.episode import EpisodeBatch


@pytest.mark.parametrize(
    "agent, who", [(None, "for critic"), ("shared actor", "for shared actor"), (2, "for agent 2")]
)
def test_a_non_finite_loss_names_the_critic_a_label_or_the_agent(agent, who):
    with pytest.raises(NonFiniteLossError, match=f"non-finite actor loss {who} "):
        check_finite(torch.tensor([1.0, float("nan")]), "actor loss", agent)
    check_finite(torch.tensor([1.0, 2.0]), "actor loss", agent)  # finite: silent


def test_a_non_finite_loss_error_shows_the_first_four_values():
    values = torch.tensor([1.0, float("nan"), 3.0, float("inf"), 5.0])
    with pytest.raises(NonFiniteLossError, match=r"\(\[1\.0, nan, 3\.0, inf\]\);"):
        check_finite(values, "critic loss", None)


def test_a_target_network_is_a_copy_that_never_takes_gradients():
    source = nn.Linear(3, 2)
    target = frozen_copy(source)
    assert all(not p.requires_grad for p in target.parameters())
    assert all(p.requires_grad for p in source.parameters())  # the source is left trainable
    for s, t in zip(source.parameters(), target.parameters()):
        assert torch.equal(s, t) and s is not t


def _episode_batch() -> EpisodeBatch:
    g = torch.Generator().manual_seed(0)
    B, L, n = 2, 3, 2
    return EpisodeBatch(
        obs=[torch.randn(B, L + 1, d, generator=g) for d in (4, 2)],
        state=torch.randn(B, L + 1, 5, generator=g),
        avail=[torch.rand(B, L + 1, a, generator=g) > 0.3 for a in (3, 4)],
        actions=torch.randint(3, (B, L, n), generator=g),
        reward=torch.randn(B, L, generator=g),
        terminated=torch.tensor([[False, False, True], [False, False, False]]),
        filled=torch.ones(B, L, dtype=torch.bool),
    )


def test_an_episode_batch_moves_every_field_and_keeps_its_values():
    batch = _episode_batch()
    # the meta device stands in for an accelerator: every tensor, list entries included, moves
    moved = batch.to(torch.device("meta"))
    pairs = [(getattr(batch, f), getattr(moved, f)) for f in batch.__dataclass_fields__]
    flat = [(a, b) for x, y in pairs for a, b in (zip(x, y) if isinstance(x, list) else [(x, y)])]
    assert len(flat) == 9
    for a, b in flat:
        assert b.device.type == "meta" and b.shape == a.shape and b.dtype == a.dtype
    assert [len(moved.obs), len(moved.avail)] == [2, 2]
    # a move to the CPU (its own device) keeps every value
    back = batch.to("cpu")
    for f in batch.__dataclass_fields__:
        a, b = getattr(batch, f), getattr(back, f)
        for x, y in zip(a, b) if isinstance(a, list) else [(a, b)]:
            assert torch.equal(x, y)
