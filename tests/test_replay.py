"""Replay buffer: n-step returns against hand-computed values, ring wrap-around, layouts, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harl.buffers.replay import ReplayBuffer, ReplaySample

CPU = torch.device("cpu")
G = 0.5


def scalar_buffer(n_envs: int, buffer_size: int) -> ReplayBuffer:
    """One agent with 1-d obs/action, 1-d state: values are easy to read back."""
    return ReplayBuffer([1], [1], [None], 1, n_envs, buffer_size, CPU)


def add_row(
    buf: ReplayBuffer,
    obs: list[float],
    reward: list[float],
    next_obs: list[float],
    term: list[bool] | None = None,
    trunc: list[bool] | None = None,
) -> None:
    """One vectorised step; obs doubles as state/action so every field carries the row's identity."""
    o, no = torch.tensor(obs)[:, None], torch.tensor(next_obs)[:, None]
    E = len(obs)
    term = term or [False] * E
    trunc = trunc or [False] * E
    ones = torch.ones(E, 1)
    buf.add(
        [o],
        o,
        [None],
        [o],
        torch.tensor(reward),
        torch.tensor(term),
        torch.tensor(trunc),
        [no],
        no,
        [None],
        ones,
        ones,
    )


def episode_buffer() -> ReplayBuffer:
    """2 envs, 6 rows. Env 0: rewards 1..6, terminated at row 2, truncated at row 4.
    Env 1: rewards 10..60, no episode end. obs = row (+50 in env 1), next_obs = 100 + row (+100 in env 1)."""
    buf = scalar_buffer(n_envs=2, buffer_size=20)
    for t in range(6):
        add_row(
            buf,
            [t, 50 + t],
            [t + 1, 10 * (t + 1)],
            [100 + t, 200 + t],
            term=[t == 2, False],
            trunc=[t == 4, False],
        )
    return buf


def gather(
    buf: ReplayBuffer, rows: list[int], envs: list[int], n_step: int = 3, truncation_bootstrap: bool = True
) -> ReplaySample:
    return buf._gather(torch.tensor(rows), torch.tensor(envs), n_step, G, truncation_bootstrap)


def test_n_step_returns_hand_computed():
    buf = episode_buffer()
    s = gather(buf, rows=[0, 1, 2, 3, 4, 0, 3], envs=[0, 0, 0, 0, 0, 1, 1])
    expected_reward = [
        1 + 0.5 * 2 + 0.25 * 3,  # rows 0,1,2: stops after the termination at row 2
        2 + 0.5 * 3,  # rows 1,2
        3,  # row 2 alone: it is done
        4 + 0.5 * 5,  # rows 3,4: stops after the truncation at row 4
        5,  # row 4 alone
        10 + 0.5 * 20 + 0.25 * 30,  # env 1 has no episode end: full 3 steps, never env 0's rewards
        40 + 0.5 * 50 + 0.25 * 60,
    ]
    torch.testing.assert_close(s.reward, torch.tensor(expected_reward))
    # terminated -> no bootstrap; truncated -> gamma^h bootstrap from the true final obs
    torch.testing.assert_close(s.discount, torch.tensor([0.0, 0.0, 0.0, 0.25, 0.5, 0.125, 0.125]))
    torch.testing.assert_close(s.next_obs[0][:, 0], torch.tensor([102.0, 102, 102, 104, 104, 202, 205]))
    torch.testing.assert_close(s.next_state[:, 0], torch.tensor([102.0, 102, 102, 104, 104, 202, 205]))
    # start-row fields come from the start row of the right env
    torch.testing.assert_close(s.obs[0][:, 0], torch.tensor([0.0, 1, 2, 3, 4, 50, 53]))
    torch.testing.assert_close(s.actions[0][:, 0], torch.tensor([0.0, 1, 2, 3, 4, 50, 53]))
    assert s.avail == [None] and s.next_avail == [None]

    no_boot = gather(buf, rows=[0, 3, 4, 0], envs=[0, 0, 0, 1], truncation_bootstrap=False)
    torch.testing.assert_close(no_boot.discount, torch.tensor([0.0, 0.0, 0.0, 0.125]))
    torch.testing.assert_close(no_boot.reward, torch.tensor([2.75, 6.5, 5.0, 27.5]))


def test_walk_stops_at_newest_row():
    buf = episode_buffer()  # newest row is 5
    s = gather(buf, rows=[5, 4, 5], envs=[0, 1, 1])
    torch.testing.assert_close(s.reward, torch.tensor([6.0, 50 + 0.5 * 60, 60.0]))
    torch.testing.assert_close(s.discount, torch.tensor([0.5, 0.25, 0.5]))  # h = 1, 2, 1
    torch.testing.assert_close(s.next_obs[0][:, 0], torch.tensor([105.0, 205, 205]))
    one = gather(buf, rows=[0, 3], envs=[1, 0], n_step=1)  # n_step 1 is the plain 1-step target
    torch.testing.assert_close(one.reward, torch.tensor([10.0, 4.0]))
    torch.testing.assert_close(one.discount, torch.tensor([0.5, 0.5]))


def test_ring_wraparound():
    buf = scalar_buffer(n_envs=2, buffer_size=8)
    assert buf.capacity == 4 and buf.n_envs == 2
    for t in range(6):  # logical rows 0..5; rows 0 and 1 get overwritten by 4 and 5
        add_row(buf, [t, 100 + t], [t, 100 + t], [t + 0.5, 100.5 + t])
    assert len(buf) == 8

    g = torch.Generator().manual_seed(0)
    s = buf.sample(400, n_step=1, gamma=G, generator=g)
    seen = set(s.obs[0][:, 0].tolist())
    assert seen == {2.0, 3.0, 4.0, 5.0, 102.0, 103.0, 104.0, 105.0}

    # physical row 1 holds the newest (logical 5), row 3 holds logical 3 and walks across the ring end
    w = gather(buf, rows=[1, 3], envs=[0, 0])
    torch.testing.assert_close(w.reward, torch.tensor([5.0, 3 + 0.5 * 4 + 0.25 * 5]))
    torch.testing.assert_close(w.discount, torch.tensor([0.5, 0.125]))
    torch.testing.assert_close(w.next_obs[0][:, 0], torch.tensor([5.5, 5.5]))


def test_heterogeneous_agents_round_trip():
    E = 3
    buf = ReplayBuffer([3, 5], [2, 1], [None, 4], 6, E, 30, CPU)
    g = torch.Generator().manual_seed(1)

    def r(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g)

    obs, nobs = [r(E, 3), r(E, 5)], [r(E, 3), r(E, 5)]
    state, nstate = r(E, 6), r(E, 6)
    avail = [None, torch.tensor([[1, 0, 1, 1], [0, 1, 1, 0], [1, 1, 1, 1]])]
    navail = [None, np.array([[0, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 1]])]  # numpy accepted too
    actions = [r(E, 2), torch.tensor([3, 0, 2])]  # Discrete index as a long [E]: stored as float [E, 1]
    active = torch.tensor([[True, False], [True, True], [False, True]])
    buf.add(
        obs,
        state,
        avail,
        actions,
        np.array([1.0, 2.0, 3.0]),
        torch.zeros(E, dtype=torch.bool),
        torch.zeros(E, dtype=torch.bool),
        nobs,
        nstate,
        navail,
        active,
        torch.ones(E, 2),
    )

    s = gather(buf, rows=[0, 0, 0], envs=[0, 1, 2], n_step=2)
    for i in range(2):
        assert torch.equal(s.obs[i], obs[i]) and torch.equal(s.next_obs[i], nobs[i])
    assert torch.equal(s.state, state) and torch.equal(s.next_state, nstate)
    assert s.avail[0] is None and s.next_avail[0] is None
    assert torch.equal(s.avail[1], avail[1].float())
    assert torch.equal(s.next_avail[1], torch.as_tensor(navail[1]).float())
    assert torch.equal(s.actions[0], actions[0])
    assert s.actions[1].dtype == torch.float32 and s.actions[1].tolist() == [[3.0], [0.0], [2.0]]
    assert torch.equal(s.active, active.float()) and torch.equal(s.next_active, torch.ones(E, 2))
    torch.testing.assert_close(s.reward, torch.tensor([1.0, 2.0, 3.0]))


def test_state_dict_round_trip_and_shape_check():
    buf = episode_buffer()
    restored = scalar_buffer(n_envs=2, buffer_size=20)
    restored.load_state_dict(buf.state_dict())
    assert len(restored) == len(buf) == 12
    a = buf.sample(64, 3, G, generator=torch.Generator().manual_seed(7))
    b = restored.sample(64, 3, G, generator=torch.Generator().manual_seed(7))
    for name in ReplaySample.__dataclass_fields__:
        x, y = getattr(a, name), getattr(b, name)
        if isinstance(x, list):
            assert all((u is None and v is None) or torch.equal(u, v) for u, v in zip(x, y))
        else:
            assert torch.equal(x, y)

    with pytest.raises(ValueError, match="shape"):
        scalar_buffer(n_envs=2, buffer_size=10).load_state_dict(buf.state_dict())
    with pytest.raises(ValueError, match="fields"):
        ReplayBuffer([1], [1], [3], 1, 2, 20, CPU).load_state_dict(buf.state_dict())


def test_sample_empty_raises():
    with pytest.raises(ValueError, match="empty"):
        scalar_buffer(n_envs=2, buffer_size=8).sample(4, 3, G)


def test_a_saved_state_holds_only_the_filled_rows_and_older_full_states_still_load():
    import io

    buf = episode_buffer()  # 12 transitions, 6 rows of 2 envs
    big = scalar_buffer(n_envs=2, buffer_size=2000)
    big.load_state_dict(buf.state_dict())
    state = big.state_dict(copy=False)
    assert all(a.shape[0] == 6 for a in state["arrays"].values())
    written = io.BytesIO()
    torch.save(state, written)  # a slice's whole storage would be 1000 rows
    full = io.BytesIO()
    torch.save({n: t for n, t in big._store.items()}, full)
    assert written.tell() < full.tell() / 10
    # a state as format-1 checkpoints saved it: every row of the capacity
    old = {"arrays": {n: t.clone() for n, t in big._store.items()}, "pos": big.pos, "size": big.size}
    again = scalar_buffer(n_envs=2, buffer_size=2000)
    again.load_state_dict(old)
    assert all(torch.equal(again._store[n], big._store[n]) for n in big._store)
