"""Scion: the LMOs' defining properties, the momentum convention, the constrained decay, validation.

The reference's recorded trajectories (``scion__*.json``) are replayed by tests/optim/test_replay.py; these
tests check each piece against an independent float64 computation.
"""

from __future__ import annotations

import math

import pytest
import torch

from descend.optim import Scion
from descend.optim._linalg import newton_schulz_scalar
from descend.optim.scion import lmo

F64 = torch.float64


def _t(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def test_spectral_lmo_acts_on_the_singular_values_only() -> None:
    # NS5 maps G = U S V^T to U p5(S/||G||_F) V^T (p5 = the scalar quintic, applied five times); checked
    # through an SVD, independent of the matrix iteration.  float64: agreement to ~1e-14 (atol 1e-12).
    for shape in ((6, 4), (4, 7)):
        g = _t(*shape)
        U, S, Vh = torch.linalg.svd(g, full_matrices=False)
        expected = U @ torch.diag(newton_schulz_scalar(S / (g.norm() + 1e-7))) @ Vh
        d_out, d_in = shape
        torch.testing.assert_close(lmo("Spectral", g, ns_dtype=F64), math.sqrt(d_out / d_in) * expected,
                                   rtol=0, atol=1e-12)
        torch.testing.assert_close(lmo("Spectral", g, {"max": True}, ns_dtype=F64),
                                   max(1.0, math.sqrt(d_out / d_in)) * expected, rtol=0, atol=1e-12)
        torch.testing.assert_close(lmo("Spectral", g, {"normalized": False}, ns_dtype=F64),
                                   math.sqrt(d_out) * expected, rtol=0, atol=1e-12)


def test_spectral_conv_scale() -> None:
    g = _t(3, 2, 2, 2)
    flat = lmo("Spectral", g.reshape(3, -1), {"normalized": False}, ns_dtype=F64) / math.sqrt(3)  # plain NS5
    torch.testing.assert_close(lmo("Auto", g, ns_dtype=F64), flat.view(g.shape) * math.sqrt(3 / 2) / 4,
                               rtol=1e-14, atol=0)


def test_elementwise_and_row_column_lmos_have_unit_norms() -> None:
    g = _t(5, 3)
    d_out, d_in = g.shape
    # the norms are of the LMO output, up to the eps 1e-8 added to them: relative 1e-8 at entries ~ 1
    torch.testing.assert_close(lmo("ColNorm", g).norm(dim=0), torch.full((d_in,), math.sqrt(d_out), dtype=F64),
                               rtol=1e-7, atol=0)
    torch.testing.assert_close(lmo("ColNorm", g, {"normalized": True}).norm(dim=0),
                               torch.full((d_in,), math.sqrt(d_out) / d_in, dtype=F64), rtol=1e-7, atol=0)
    torch.testing.assert_close(lmo("RowNorm", g).norm(dim=1), torch.full((d_out,), 1 / math.sqrt(d_in), dtype=F64),
                               rtol=1e-7, atol=0)
    torch.testing.assert_close(lmo("RowNorm", g, {"transpose": True, "normalized": False}).norm(dim=0),
                               torch.ones(d_in, dtype=F64), rtol=1e-7, atol=0)
    assert torch.equal(lmo("Sign", g), g.sign() / d_in)
    assert torch.equal(lmo("Sign", g, {"normalized": False}), g.sign())
    b = _t(6)
    torch.testing.assert_close(lmo("BiasRMS", b).pow(2).mean(), torch.tensor(1.0, dtype=F64), rtol=1e-7, atol=0)


def test_momentum_is_the_weight_of_the_new_gradient_and_decay_is_constrained() -> None:
    lr, alpha, scale = 0.05, 0.3, 2.0
    for unconstrained in (False, True):
        p = torch.nn.Parameter(_t(4, 5))
        w = p.detach().clone()
        opt = Scion([p], lr=lr, momentum=alpha, norm="Sign", scale=scale, unconstrained=unconstrained)
        buf = torch.zeros_like(w)
        for t in range(6):
            g = _t(4, 5, seed=10 + t)
            p.grad = g.clone()
            opt.step()
            buf = (1 - alpha) * buf + alpha * g
            w = (w if unconstrained else w * (1 - lr)) - lr * scale * buf.sign() / 5
        # same operations up to order: a few ulps of |W| ~ 1
        torch.testing.assert_close(p.detach(), w, rtol=0, atol=1e-14)


def test_state_is_lazy_and_only_kept_with_averaging() -> None:
    p, q = torch.nn.Parameter(_t(3, 3)), torch.nn.Parameter(_t(3))
    opt = Scion([{"params": [p]}, {"params": [q], "momentum": 0.1}], lr=0.01)
    assert len(opt.state) == 0
    p.grad, q.grad = _t(3, 3, seed=1), _t(3, seed=2)
    opt.step()
    assert p not in opt.state  # momentum 1: no buffer
    assert set(opt.state[q]) == {"momentum_buffer"} and isinstance(opt.state[q]["momentum_buffer"], torch.Tensor)


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"lr": -1.0}, "lr"), ({"momentum": 0.0}, "momentum"), ({"momentum": 1.5}, "momentum"),
    ({"scale": -1.0}, "scale"), ({"norm": "Frobenius"}, "norm"), ({"unconstrained": 1}, "unconstrained"),
    ({"norm": "Spectral", "norm_kwargs": {"transpose": True}}, "norm_kwargs"),
    ({"norm": "Spectral", "norm_kwargs": {"steps": 0}}, r"norm_kwargs\['steps'\]"),
    ({"norm": "Sign", "norm_kwargs": {"normalized": "yes"}}, "normalized"),
    ({"ns_dtype": torch.int64}, "ns_dtype"),
])
def test_validation_names_the_argument(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        Scion([torch.nn.Parameter(_t(2, 2))], **kwargs)


def test_norm_must_fit_the_parameter_shape() -> None:
    with pytest.raises(ValueError, match=r"norm 'Spectral' needs parameters with ndim in \(2,\)"):
        Scion([torch.nn.Parameter(_t(4))], norm="Spectral")
    opt = Scion([torch.nn.Parameter(_t(2, 2))])
    with pytest.raises(ValueError, match="norm 'BiasRMS'"):
        opt.add_param_group({"params": [torch.nn.Parameter(_t(2, 2))], "norm": "BiasRMS"})
    assert len(opt.param_groups) == 1  # the refused group was not kept


def test_bfloat16_newton_schulz_default_is_close_to_float64() -> None:
    # the reference runs Newton-Schulz in bfloat16 (8-bit mantissa, 2^-8 = 0.4% per rounding, five iterations
    # with slope ~3.4): measured relative error 1.3-1.5% on 32x16 Gaussian matrices; 5% leaves margin, while a
    # wrong scale or transposition would be off by O(1).  The result comes back in the parameter's dtype.
    g = torch.randn(32, 16, generator=torch.Generator().manual_seed(0))
    fast, exact = lmo("Spectral", g), lmo("Spectral", g.double(), ns_dtype=F64)
    assert fast.dtype == torch.float32
    assert float((fast.double() - exact).norm() / exact.norm()) < 0.05


class _TinyLM(torch.nn.Module):
    def __init__(self, tied: bool) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(11, 4)
        self.hidden = torch.nn.Linear(4, 4)
        self.lm_head = torch.nn.Linear(4, 11, bias=False)
        if tied:
            self.lm_head.weight = self.embed.weight  # type: ignore[assignment]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lm_head(torch.relu(self.hidden(self.embed(x))))


def test_param_groups_follow_the_layer_roles() -> None:
    from descend.optim import scion_param_groups

    m = _TinyLM(tied=False)
    groups = {g["name"]: g for g in scion_param_groups(m, scale=2.0)}
    assert [p is m.lm_head.weight for p in groups["head"]["params"]] == [True]
    assert groups["head"]["norm"] == "Sign" and groups["head"]["scale"] == 120.0
    assert groups["embedding"]["params"][0] is m.embed.weight and groups["embedding"]["norm_kwargs"]["transpose"]
    assert {id(p) for p in groups["auto"]["params"]} == {id(m.hidden.weight), id(m.hidden.bias)}
    tied = {g["name"]: g for g in scion_param_groups(_TinyLM(tied=True))}
    assert set(tied) == {"head", "auto"}  # the tied weight is the head's (Sign), as in the nanoGPT setting
    opt = Scion(scion_param_groups(m), lr=1e-3, momentum=0.1)  # every group is valid for its shapes
    m(torch.tensor([1, 2, 3])).sum().backward()
    opt.step()
    assert all(torch.isfinite(p).all() for p in m.parameters())


def test_ns_dtype_by_name_is_the_dtype() -> None:
    a, b = torch.nn.Parameter(_t(4, 3)), torch.nn.Parameter(_t(4, 3))
    oa, ob = Scion([a], ns_dtype="float64"), Scion([b], ns_dtype=F64)
    a.grad, b.grad = _t(4, 3, seed=1), _t(4, 3, seed=1)
    oa.step()
    ob.step()
    assert torch.equal(a, b)


def test_load_state_dict_runs_the_group_validation_before_changing_anything() -> None:
    w = torch.nn.Parameter(_t(4, 3))
    src = Scion([w], lr=0.01, momentum=0.5, ns_dtype=torch.float64)
    w.grad = _t(4, 3, seed=1)
    src.step()
    for key, value, match in (("lr", float("nan"), "lr"), ("lr", -1.0, "lr"), ("norm", "BiasRMS", "norm"),
                              ("norm_kwargs", {"transpose": 1}, "norm_kwargs")):
        state = src.state_dict()
        state["param_groups"][0][key] = value
        target = Scion([torch.nn.Parameter(_t(4, 3))], lr=0.01, momentum=0.5)
        with pytest.raises(ValueError, match=match):
            target.load_state_dict(state)
        assert target.param_groups[0]["lr"] == 0.01 and not target.state
    state = src.state_dict()
    state["state"][0] = {"exp_avg": state["state"][0]["momentum_buffer"]}  # another optimizer's state key
    with pytest.raises(ValueError, match="exp_avg"):
        Scion([torch.nn.Parameter(_t(4, 3))], momentum=0.5).load_state_dict(state)
