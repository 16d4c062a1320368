import torch

from harl.common.valuenorm import ValueNorm


def test_round_trip_and_statistics():
    torch.manual_seed(0)
    vn = ValueNorm(beta=0.9)
    data = torch.randn(1000) * 5 + 3
    for chunk in data.chunk(50):
        vn.update(chunk)
    x = torch.randn(10) * 5 + 3
    torch.testing.assert_close(vn.denormalize(vn.normalize(x)), x, rtol=1e-5, atol=1e-5)
    mean, var = vn.mean_var()
    assert abs(mean.item() - 3) < 1.0 and abs(var.sqrt().item() - 5) < 1.0


def test_variance_floor_and_identity_before_updates():
    vn = ValueNorm()
    _, var = vn.mean_var()
    assert var.item() >= 1e-2
    vn.update(torch.full((8,), 2.0))  # zero variance batch
    assert vn.mean_var()[1].item() >= 1e-2


def test_state_dict_restores_statistics():
    vn = ValueNorm()
    vn.update(torch.arange(10.0))
    state = vn.state_dict()
    assert set(state) == {"running_mean", "running_mean_sq", "debiasing_term"}
    other = ValueNorm()
    other.load_state_dict(state)
    x = torch.linspace(-3, 3, 7)
    torch.testing.assert_close(other.normalize(x), vn.normalize(x))
