"""HATRPO's Fisher-vector products: the Gauss-Newton form (forward mode + one backward pass)
against the Hessian of the mean KL, for every action head, with dead agents masked, feed-forward
and recurrent; and each head's KL curvature against autograd's Hessian of its own KL."""

import numpy as np
import pytest
import torch
from gymnasium import spaces

from harl.algos.on_policy.hatrpo import HATRPO
from harl.algos.on_policy.trpo import double_backward_fvp, forward_mode_jvp, gauss_newton_fvp
from harl.buffers.rollout import AgentBatch
from harl.config import HATRPOConfig
from harl.models.heads import CategoricalHead, GaussianHead, MultiCategoricalHead
from harl.models.policy import StochasticPolicy
from harl.models.tangents import Linearized

CPU = torch.device("cpu")
OBS = 5
SPACES = {
    "box": spaces.Box(-1, 1, (3,)),
    "discrete": spaces.Discrete(4),
    "multidiscrete": spaces.MultiDiscrete([3, 2]),
}


def learner(space, recurrent_n=0, **overrides):
    cfg = HATRPOConfig(hidden_sizes=[16, 16], recurrent_n=recurrent_n, **overrides)
    if recurrent_n:
        cfg.use_recurrent_policy = True
    torch.manual_seed(0)
    return HATRPO(cfg, [spaces.Box(-1, 1, (OBS,))] * 2, [space] * 2, spaces.Box(-1, 1, (4,)), CPU, seed=0)


def batch(space, chunks=6, length=1, recurrent_n=0, dead=True):
    g = torch.Generator().manual_seed(1)
    obs = torch.randn(chunks, length, OBS, generator=g)
    avail = None
    if isinstance(space, spaces.Box):
        actions = torch.randn(chunks, length, 3, generator=g)
    elif isinstance(space, spaces.Discrete):
        actions = torch.zeros(chunks, length, 1, dtype=torch.long)
        avail = torch.ones(chunks, length, 4)
        avail[::2, :, 2:] = 0  # some actions unavailable
    else:
        actions = torch.zeros(chunks, length, 2, dtype=torch.long)
    active = torch.ones(chunks, length)
    if dead:
        active[1] = 0
    resets = torch.zeros(chunks, length)
    resets[:, 0] = 1
    h0 = torch.zeros(chunks, 1, 16) if recurrent_n else None
    return AgentBatch(obs, actions, torch.zeros(chunks, length, 1), avail, active, resets, h0)


def products(space, recurrent_n=0, use_masks=True, dead=True, length=1):
    """Both products of agent 0's mean-KL Hessian on 3 random vectors, after moving the actor
    away from its initialisation (so no weight is special)."""
    out = {}
    for kind in ("gauss_newton", "double_backward"):
        lrn = learner(
            space, recurrent_n, fisher_product=kind, use_policy_active_masks=use_masks, fvp_damping=0.0
        )
        actor = lrn.actors[0]
        with torch.no_grad():
            g = torch.Generator().manual_seed(2)
            for p in actor.parameters():
                p.add_(0.3 * torch.randn(p.shape, generator=g))
        b = batch(space, length=length, recurrent_n=recurrent_n, dead=dead)
        mask = b.active if use_masks else None
        params = list(actor.parameters())
        with torch.no_grad():
            old = lrn.distribution(actor, b)

        def mean_kl(lrn=lrn, actor=actor, b=b, mask=mask, old=old):
            kl = actor.head.kl(old, lrn.distribution(actor, b))
            return (kl * mask).sum() / mask.sum() if mask is not None else kl.mean()

        fvp = lrn.fisher_vector_product(actor, b, mask, mean_kl, params)
        n = sum(p.numel() for p in params)
        g = torch.Generator().manual_seed(3)
        out[kind] = torch.stack([fvp(torch.randn(n, generator=g)) for _ in range(3)])
    return out


def assert_same_products(out):
    """Equal to float32 rounding: each product's error is tiny against its own size."""
    for gn, db in zip(out["gauss_newton"], out["double_backward"]):
        assert (gn - db).norm() < 1e-5 * db.norm(), ((gn - db).norm(), db.norm())


@pytest.mark.parametrize("kind", list(SPACES))
@pytest.mark.parametrize("use_masks", [True, False])
def test_gauss_newton_product_is_the_kl_hessian_product(kind, use_masks):
    out = products(SPACES[kind], use_masks=use_masks)
    assert_same_products(out)
    assert out["gauss_newton"].norm() > 1e-2  # the Fisher alone (no damping): not zero


def test_gauss_newton_product_ignores_dead_samples_only_when_masks_are_used():
    # the masked product differs from the unmasked one (dead samples carry weight there)
    masked = products(SPACES["box"], use_masks=True)["gauss_newton"]
    unmasked = products(SPACES["box"], use_masks=False)["gauss_newton"]
    assert (masked - unmasked).abs().max() > 1e-3


@pytest.mark.parametrize("kind", ["box", "discrete"])
def test_gauss_newton_product_through_a_recurrent_policy(kind):
    out = products(SPACES[kind], recurrent_n=1, length=3)
    assert_same_products(out)


def test_gauss_newton_fvp_on_a_hand_computed_linear_model():
    # y = {"mean": X w} with per-entry curvature c: F = X^T diag(c) X; X = [[1, 2], [3, -1]],
    # c = (2, 1): X^T diag(c) X = [[2 + 9, 4 - 3], [4 - 3, 8 + 1]] = [[11, 1], [1, 9]]
    model = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.5, -0.5]]))
    x = torch.tensor([[1.0, 2.0], [3.0, -1.0]])
    curvature = lambda d: {"mean": torch.tensor([[2.0], [1.0]])}  # noqa: E731
    outputs, jvp = forward_mode_jvp(model, lambda: {"mean": model(x)})
    fvp = gauss_newton_fvp(outputs, jvp, curvature, [model.weight], damping=0.5)
    torch.testing.assert_close(fvp(torch.tensor([1.0, 0.0])), torch.tensor([11.5, 1.0]))
    torch.testing.assert_close(fvp(torch.tensor([0.0, 2.0])), torch.tensor([2.0, 19.0]))


def test_forward_mode_jvp_refuses_parameters_outside_the_module():
    model, stray = torch.nn.Linear(2, 1), torch.nn.Parameter(torch.zeros(1))
    _, jvp = forward_mode_jvp(model, lambda: {"mean": model(torch.ones(1, 2))})
    with pytest.raises(ValueError, match="must belong"):
        jvp({stray: torch.ones(1)})


def test_the_two_products_agree_on_a_function_of_distribution_parameters():
    # the double-backward form on the same stand-in: KL = sum c (mean - mean_old)^2 / 2
    model = torch.nn.Linear(2, 1, bias=False)
    x = torch.tensor([[1.0, 2.0], [3.0, -1.0]])
    c = torch.tensor([[2.0], [1.0]])
    old = model(x).detach()
    db = double_backward_fvp(lambda: (c * (model(x) - old) ** 2).sum() / 2, [model.weight], 0.5)
    gn = gauss_newton_fvp(
        *forward_mode_jvp(model, lambda: {"mean": model(x)}), lambda d: {"mean": c}, [model.weight], 0.5
    )
    v = torch.tensor([0.3, -1.2])
    torch.testing.assert_close(gn(v), db(v))


def _hessian_diag_at_equality(kl, params):
    """Autograd's Hessian of kl(params, new) in new's flattened entries at new = params."""
    keys = list(params)
    flat = torch.cat([params[k].reshape(-1) for k in keys]).double()
    sizes = [params[k].numel() for k in keys]

    def f(v):
        parts = torch.split(v, sizes)
        new = {k: p.reshape(params[k].shape) for k, p in zip(keys, parts)}
        return kl({k: params[k].double() for k in keys}, new).sum()

    return torch.autograd.functional.hessian(f, flat)


def test_gaussian_kl_curvature_is_its_kl_hessian():
    params = {"mean": torch.tensor([[0.3, -1.0]]), "std": torch.tensor([[0.5, 2.0]])}
    h = _hessian_diag_at_equality(GaussianHead.kl, params)
    # diagonal: 1/s^2 for the means (4, .25), 2/s^2 for the stds (8, .5); no cross terms
    expected = torch.diag(torch.tensor([4.0, 0.25, 8.0, 0.5], dtype=torch.float64))
    torch.testing.assert_close(h, expected)
    cur = GaussianHead.kl_curvature(params)
    torch.testing.assert_close(cur["mean"], torch.tensor([[4.0, 0.25]]))
    torch.testing.assert_close(cur["std"], torch.tensor([[8.0, 0.5]]))


def test_categorical_kl_curvature_gives_the_logit_hessian_through_log_softmax():
    # in the logits z the KL's Hessian is diag(p) - p p^T; the curvature in log p is p, and
    # log p = z - logsumexp(z) has Jacobian I - 1 p^T: (I - p 1^T) diag(p) (I - 1 p^T)
    z = torch.tensor([0.2, -0.4, 1.0], dtype=torch.float64)
    p = z.softmax(-1)
    log_p = torch.log_softmax(z, -1)
    cur = CategoricalHead.kl_curvature({"log_p": log_p[None]})["log_p"][0]
    torch.testing.assert_close(cur, p)
    jac = torch.eye(3, dtype=torch.float64) - torch.ones(3, 1, dtype=torch.float64) * p[None]
    via_log_p = jac.T @ torch.diag(cur) @ jac

    def kl_in_logits(new_z):
        return CategoricalHead.kl({"log_p": log_p}, {"log_p": torch.log_softmax(new_z, -1)})

    torch.testing.assert_close(torch.autograd.functional.hessian(kl_in_logits, z), via_log_p)
    torch.testing.assert_close(via_log_p, torch.diag(p) - p[:, None] * p[None])


def test_multicategorical_kl_curvature_is_each_sub_actions():
    head = MultiCategoricalHead(4, [2, 3])
    params = {
        "log_p0": torch.log(torch.tensor([[0.25, 0.75]])),
        "log_p1": torch.log(torch.tensor([[0.5, 0.2, 0.3]])),
    }
    cur = head.kl_curvature(params)
    torch.testing.assert_close(cur["log_p0"], torch.tensor([[0.25, 0.75]]))
    torch.testing.assert_close(cur["log_p1"], torch.tensor([[0.5, 0.2, 0.3]]))


@pytest.mark.parametrize("kind", ["box", "discrete"])
def test_a_hatrpo_step_is_the_same_with_either_product(kind):
    space = SPACES[kind]
    steps = {}
    for product in ("gauss_newton", "double_backward"):
        lrn = learner(space, fisher_product=product)
        b = batch(space, chunks=32)
        g = torch.Generator().manual_seed(4)
        adv, factor = torch.randn(32, 1, generator=g), torch.ones(32, 1)
        with torch.no_grad():
            b.logp_old = lrn.evaluate_actions(lrn.actors[0], b)[0]
        before = torch.nn.utils.parameters_to_vector(lrn.actors[0].parameters()).detach().clone()
        info = lrn.update_agent(0, b, adv, factor)
        assert info["step_accepted"] == 1.0
        steps[product] = torch.nn.utils.parameters_to_vector(lrn.actors[0].parameters()).detach() - before
    assert steps["gauss_newton"].abs().max() > 1e-3
    np.testing.assert_allclose(steps["gauss_newton"], steps["double_backward"], rtol=1e-3, atol=1e-6)


def test_an_unknown_fisher_product_is_refused_by_name():
    lrn = learner(SPACES["box"], fisher_product="exact")
    b = batch(SPACES["box"])
    with pytest.raises(ValueError, match="fisher_product 'exact'.*gauss_newton, double_backward"):
        lrn.update_agent(0, b, torch.ones(6, 1), torch.ones(6, 1))


# ---------------------------------------------------------------- recorded-forward tangents
def _policy(space, activation="relu", feature_norm=True, recurrent_n=0):
    torch.manual_seed(5)
    policy = StochasticPolicy(
        spaces.Box(-1, 1, (OBS,)),
        space,
        [12, 12],
        activation,
        feature_norm,
        std_x_coef=1.5,  # not 1: its place in the std's derivative shows
        std_y_coef=0.7,
        recurrent_n=recurrent_n,
    )
    with torch.no_grad():
        for p in policy.parameters():  # away from the initialisation (zero biases, small gains)
            p.add_(0.3 * torch.randn(p.shape))
    return policy


@pytest.mark.parametrize("kind", list(SPACES))
@pytest.mark.parametrize("activation", ["relu", "tanh", "leaky_relu", "selu", "hardswish"])
@pytest.mark.parametrize("feature_norm", [True, False])
def test_recorded_tangents_equal_torch_forward_mode(kind, activation, feature_norm):
    policy = _policy(SPACES[kind], activation, feature_norm)
    b = batch(SPACES[kind], chunks=7)
    obs, avail = b.obs.transpose(0, 1), None if b.avail is None else b.avail.transpose(0, 1)
    assert Linearized.supports(policy)
    ours = Linearized(policy, lambda: policy.distribution(obs, avail), view=lambda x: x.transpose(0, 1))
    outputs, torch_jvp = forward_mode_jvp(policy, lambda: policy.distribution(obs, avail))
    g = torch.Generator().manual_seed(6)
    params = list(policy.parameters())
    for subset in (params, params[::2], params[-1:]):  # all weights, some, the last only
        tangents = {p: torch.randn(p.shape, generator=g) for p in subset}
        expected = {k: v.transpose(0, 1) for k, v in torch_jvp(tangents).items()}
        got = ours.jvp(tangents)
        assert set(got) == set(expected) == set(ours.outputs)
        for k in got:
            assert got[k].shape == ours.outputs[k].shape
            torch.testing.assert_close(got[k], expected[k], rtol=1e-4, atol=1e-5)
    for k, v in outputs.items():  # the recorded forward is the policy's own
        torch.testing.assert_close(ours.outputs[k], v.transpose(0, 1))


def test_recorded_log_probability_tangents_have_a_zero_p_weighted_sum():
    # sum(p) = 1 stays 1: sum(p (log p)_t) = 0 (masked actions, p = 0, included)
    policy = _policy(SPACES["discrete"])
    b = batch(SPACES["discrete"])
    obs, avail = b.obs.transpose(0, 1), b.avail.transpose(0, 1)
    ours = Linearized(policy, lambda: policy.distribution(obs, avail))
    tangents = {p: torch.ones_like(p) for p in policy.parameters()}
    log_p_t = ours.jvp(tangents)["log_p"]
    p = ours.outputs["log_p"].detach().exp()
    torch.testing.assert_close((p * log_p_t).sum(-1), torch.zeros(p.shape[:-1]), atol=1e-5, rtol=0)
    assert log_p_t.abs().max() > 0.1


def test_recurrent_policies_go_through_torch_forward_mode():
    assert not Linearized.supports(_policy(SPACES["box"], recurrent_n=1))
    with pytest.raises(ValueError, match="unsupported policy"):
        Linearized(_policy(SPACES["box"], recurrent_n=1), dict)


def test_gauss_newton_fvp_of_outputs_that_do_not_depend_on_the_weights_is_the_damping():
    w = torch.nn.Parameter(torch.ones(2))
    outputs = {"mean": torch.ones(3, 1)}  # a constant: no graph to the weights
    fvp = gauss_newton_fvp(
        outputs, lambda t: {"mean": torch.zeros(3, 1)}, lambda d: {"mean": d["mean"]}, [w], 0.25
    )
    torch.testing.assert_close(fvp(torch.tensor([2.0, -4.0])), torch.tensor([0.5, -1.0]))


def test_gauss_newton_fvp_gives_zero_curvature_to_weights_the_outputs_do_not_use():
    used, unused = torch.nn.Parameter(torch.tensor([1.0])), torch.nn.Parameter(torch.tensor([3.0]))
    x = torch.tensor([[2.0]])
    outputs = {"mean": x * used}  # d mean / d used = 2: F = 2 * c * 2 with c = 1.5
    fvp = gauss_newton_fvp(
        outputs,
        lambda t: {"mean": x * t[used]},
        lambda d: {"mean": torch.full_like(d["mean"], 1.5)},
        [used, unused],
        0.5,
    )
    torch.testing.assert_close(fvp(torch.tensor([1.0, 1.0])), torch.tensor([6.5, 0.5]))


def test_one_active_sample_weighs_as_mean_kl_does():
    # masked_mean divides by max(active count, 1): a batch with one live sample
    out = {}
    for kind in ("gauss_newton", "double_backward"):
        lrn = learner(SPACES["box"], fisher_product=kind, fvp_damping=0.0)
        b = batch(SPACES["box"], chunks=4, dead=False)
        b.active = torch.tensor([[1.0], [0.0], [0.0], [0.0]])
        actor, params = lrn.actors[0], list(lrn.actors[0].parameters())
        with torch.no_grad():
            old = lrn.distribution(actor, b)

        def mean_kl(lrn=lrn, actor=actor, b=b, old=old):
            kl = actor.head.kl(old, lrn.distribution(actor, b))
            return (kl * b.active).sum() / b.active.sum().clamp(min=1.0)

        fvp = lrn.fisher_vector_product(actor, b, b.active, mean_kl, params)
        out[kind] = fvp(torch.ones(sum(p.numel() for p in params)))[None]
    assert_same_products(out)


def test_feed_forward_actors_take_the_recorded_tangents(monkeypatch):
    import harl.algos.on_policy.hatrpo as hatrpo

    def refuse(*args, **kwargs):
        raise AssertionError("torch's forward mode used for a feed-forward actor")

    monkeypatch.setattr(hatrpo, "forward_mode_jvp", refuse)
    products(SPACES["box"])  # feed-forward: fine without it
    with pytest.raises(AssertionError, match="forward mode used"):
        products(SPACES["box"], recurrent_n=1, length=3)  # recurrent: needs it
