"""Muon (descend.optim.muon) and its Newton–Schulz iteration (descend.optim._linalg).

References: torch.optim.Muon (torch 2.13, live) and the golden fixtures recorded from torch.optim.Muon and
KellerJordan/Muon@857d1ad SingleDeviceMuon.  Float64 Newton–Schulz is obtained from torch's code the way the
fixtures were recorded: ``Tensor.bfloat16`` temporarily returns a same-dtype copy.
"""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
from torch import nn

import descend.optim as do
from descend.optim._linalg import NS_COEFFICIENTS, newton_schulz, newton_schulz_scalar
from descend.optim.muon import Muon, muon_param_groups, shape_factor
from descend.optim.replay import replay_file
from descend.optim.roles import NotApplicable, Role

from ..conftest import fixture_files
from ..tolerances import accumulation_rtol

torch_muon = pytest.importorskip("torch.optim._muon")

SHAPES = [(6, 4), (4, 7), (5, 5), (33, 17), (17, 33)]

# Invariant band of p(x) = a x + b x³ + c x⁵ with Jordan et al.'s coefficients: p has a local minimum at
# x₂ = 1.0501 (p'(x₂) = 0), so m = p(x₂) is the least value p takes on [m, M] and M = p(m) the largest
# (p decreases on [m, x₂] and p(M) = 0.753 < M); hence p maps [m, M] into itself.  Five steps bring every
# normalised singular value >= DELTA5 into the band (measured on a 4e5-point log grid of [1e-4, 1]).
BAND = (0.6818314621771844, 1.1343572645624722)
DELTA5 = 0.0052


@pytest.fixture
def ns_float64(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make torch.optim.Muon's Newton–Schulz run in the input's dtype (the fixtures' reference patch)."""
    monkeypatch.setattr(torch.Tensor, "bfloat16", lambda self, *a, **k: self.clone())


def _grads(shapes: list[tuple[int, ...]], steps: int, dtype: torch.dtype, seed: int = 0) -> list[list[torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(*s, generator=g, dtype=torch.float64).to(dtype) for s in shapes] for _ in range(steps)]


def _run(opt_factory, shapes, grads, dtype) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(123)
    params = [nn.Parameter(torch.randn(*s, generator=g, dtype=torch.float64).to(dtype)) for s in shapes]
    opt = opt_factory(params)
    for step_grads in grads:
        for p, gr in zip(params, step_grads, strict=True):
            p.grad = gr.clone()
        opt.step()
    return [p.detach() for p in params]


# ------------------------------------------------------------------------------------------ fixtures


@pytest.mark.parametrize("path", fixture_files("muon__"), ids=lambda p: p.stem)
def test_fixture_replays(path) -> None:
    result = replay_file(path)
    assert result.passed, f"{path.name}: max |err| {result.max_abs_error:.3g}, err/tol {result.max_ratio:.3g}"


def test_all_four_fixtures_present() -> None:
    assert len(fixture_files("muon__")) == 4


# ------------------------------------------------------------------------------------------ Newton–Schulz


@pytest.mark.parametrize("shape", SHAPES)
def test_newton_schulz_bitwise_equals_torch_bf16(shape) -> None:
    G = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    ours = newton_schulz(G, 5, NS_COEFFICIENTS, dtype=torch.bfloat16, normalization="torch", eps=1e-7)
    theirs = torch_muon._zeropower_via_newtonschulz(G, NS_COEFFICIENTS, 5, 1e-7)
    assert ours.dtype == theirs.dtype == torch.bfloat16
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("shape", SHAPES)
def test_newton_schulz_float64_equals_torch(shape, ns_float64) -> None:
    G = torch.randn(*shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    before = G.clone()
    ours = newton_schulz(G, 5, dtype=torch.float64, normalization="torch")
    theirs = torch_muon._zeropower_via_newtonschulz(G, NS_COEFFICIENTS, 5, 1e-7)
    assert theirs.dtype == torch.float64
    assert torch.equal(ours, theirs)
    assert torch.equal(G, before), "the input must not be modified"


def test_newton_schulz_normalisations_differ_only_by_eps() -> None:
    G = torch.randn(5, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    t = newton_schulz(G, dtype=torch.float64, normalization="torch")
    k = newton_schulz(G, dtype=torch.float64, normalization="keller")
    assert not torch.equal(t, k)  # the float64 fixtures tell them apart
    torch.testing.assert_close(t, k, rtol=1e-6, atol=1e-6)
    zero = torch.zeros(3, 4, dtype=torch.float64)
    for norm in ("torch", "keller"):
        assert torch.equal(newton_schulz(zero, dtype=torch.float64, normalization=norm), zero)


@pytest.mark.parametrize("shape", [(64, 16), (16, 64), (96, 48), (48, 96), (40, 20), (20, 40)])
def test_newton_schulz_acts_on_singular_values_and_lands_in_band(shape) -> None:
    """fp64: NS5(G) = U p⁵(S/‖G‖_F) Vᵀ exactly, and every singular value ends in the invariant band."""
    g = torch.Generator().manual_seed(sum(shape))
    G = torch.randn(*shape, generator=g, dtype=torch.float64)
    U, S, Vh = torch.linalg.svd(G, full_matrices=False)
    assert float(S.min() / G.norm()) >= DELTA5  # tall/wide Gaussians are well conditioned
    O = newton_schulz(G, dtype=torch.float64, normalization="torch")
    predicted = newton_schulz_scalar(S / G.norm())
    # five quintic steps of n-term products, each amplifying earlier rounding by at most p'(0) = 3.4445:
    # 5 n eps 3.4445^5 (~1e-11), against an SVD reference accurate to n eps
    tol = accumulation_rtol(5 * max(shape), growth=3.4445**5, safety=2.0)
    torch.testing.assert_close(O, U @ torch.diag(predicted) @ Vh, rtol=0, atol=tol)
    sv = torch.linalg.svdvals(O)
    assert BAND[0] - 1e-9 <= float(sv.min()) and float(sv.max()) <= BAND[1] + 1e-9
    # bf16: the same band up to bf16 rounding (measured 0.678 .. 1.140 over such shapes)
    sv16 = torch.linalg.svdvals(newton_schulz(G.float(), dtype=torch.bfloat16).double())
    assert BAND[0] - 0.03 <= float(sv16.min()) and float(sv16.max()) <= BAND[1] + 0.03


def test_band_is_invariant_and_reached_from_delta5() -> None:
    a, b, c = NS_COEFFICIENTS
    x2 = math.sqrt((-3 * b + math.sqrt(9 * b * b - 20 * a * c)) / (10 * c))
    assert newton_schulz_scalar(torch.tensor(x2, dtype=torch.float64), 1).item() == pytest.approx(BAND[0])
    band = torch.linspace(*BAND, 20001, dtype=torch.float64)
    once = newton_schulz_scalar(band, 1)
    assert float(once.min()) >= BAND[0] - 1e-12 and float(once.max()) <= BAND[1] + 1e-12
    xs = torch.logspace(math.log10(DELTA5), 0, 50001, dtype=torch.float64)
    five = newton_schulz_scalar(xs, 5)
    assert float(five.min()) >= BAND[0] - 1e-12 and float(five.max()) <= BAND[1] + 1e-12
    # below DELTA5 the five steps are not enough: tiny singular values stay small
    assert newton_schulz_scalar(torch.tensor(1e-4, dtype=torch.float64)).item() < 0.1


# ------------------------------------------------------------------------------------------ vs torch.optim.Muon


@pytest.mark.parametrize(("nesterov", "adjust", "momentum"),
                         [(True, None, 0.95), (False, "original", 0.9), (True, "match_rms_adamw", 0.95),
                          (False, "match_rms_adamw", 0.0)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_trajectory_bitwise_equals_torch_muon(nesterov, adjust, momentum, dtype, monkeypatch) -> None:
    """float64 params with float64 NS (patched torch), float32 params with torch's own bfloat16 NS."""
    shapes = [(6, 4), (4, 7), (9, 9)]
    grads = _grads(shapes, 12, dtype)
    hp = {"lr": 0.02, "weight_decay": 0.1, "momentum": momentum, "nesterov": nesterov}
    ns_dtype = "float64" if dtype == torch.float64 else "bfloat16"
    ours = _run(lambda ps: Muon(ps, **hp, ns_dtype=ns_dtype, normalization="torch", adjust_lr_fn=adjust,
                                use_muon=True), shapes, grads, dtype)
    if dtype == torch.float64:
        monkeypatch.setattr(torch.Tensor, "bfloat16", lambda self, *a, **k: self.clone())
    theirs = _run(lambda ps: torch.optim.Muon(ps, **hp, adjust_lr_fn=adjust), shapes, grads, dtype)
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a, b), f"max |diff| {(a - b).abs().max():.3g}"


def test_keller_and_original_scaling_agree_up_to_rounding() -> None:
    shapes = [(8, 3), (3, 8)]
    grads = _grads(shapes, 6, torch.float64)
    runs = [_run(lambda ps, fn=fn: Muon(ps, ns_dtype="float64", adjust_lr_fn=fn), shapes, grads, torch.float64)
            for fn in ("keller", "original")]
    for a, b in zip(*runs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-14, atol=1e-14)


def test_shape_factors() -> None:
    assert shape_factor("keller", 8, 2) == shape_factor("original", 8, 2) == shape_factor(None, 8, 2) == 2.0
    assert shape_factor("original", 2, 8) == 1.0
    assert shape_factor("match_rms_adamw", 2, 100) == pytest.approx(2.0)
    assert shape_factor("none", 8, 2) == 1.0


# ------------------------------------------------------------------------------------------ routing, AdamW


def test_aux_adamw_matches_torch_adamw() -> None:
    shapes = [(7,), (3, 4)]
    grads = _grads(shapes, 15, torch.float64)
    hp = {"lr": 3e-3, "betas": (0.8, 0.95), "eps": 1e-9, "weight_decay": 0.05}
    ours = _run(lambda ps: Muon([{"params": ps, "use_muon": False}], **hp), shapes, grads, torch.float64)
    theirs = _run(lambda ps: torch.optim.AdamW(ps, **hp), shapes, grads, torch.float64)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-15)


def test_auto_routing_by_ndim_and_adam_lr_ratio() -> None:
    w, b = nn.Parameter(torch.randn(4, 3)), nn.Parameter(torch.randn(4))
    opt = Muon([w, b], lr=0.1, adam_lr_ratio=0.5)
    w.grad, b.grad = torch.randn(4, 3), torch.randn(4)
    b0 = b.detach().clone()
    opt.step()
    assert set(opt.state[w]) == {"momentum_buffer"}
    assert set(opt.state[b]) == {"step", "exp_avg", "exp_avg_sq"}
    # first AdamW step moves every coordinate by lr_adam * sign(g) (up to eps)
    torch.testing.assert_close(b.detach(), b0 - 0.05 * b.grad.sign(), rtol=0, atol=1e-6)
    assert opt.param_groups[0]["adam_lr_ratio"] == 0.5


def test_use_muon_groups() -> None:
    with pytest.raises(ValueError, match="ndim >= 2"):
        Muon([{"params": [nn.Parameter(torch.randn(3))], "use_muon": True}])
    opt = Muon([{"params": [nn.Parameter(torch.randn(3, 3))], "use_muon": False, "lr": 1e-3},
                {"params": [nn.Parameter(torch.randn(3, 3))], "use_muon": True}])
    assert opt.param_groups[0]["adam_lr_ratio"] == 1.0  # Keller-style group: lr is the AdamW lr
    assert opt.param_groups[1]["adam_lr_ratio"] == pytest.approx(0.015)
    with pytest.raises(ValueError, match="use_muon"):
        Muon([nn.Parameter(torch.randn(3, 3))], use_muon="yes")
    with pytest.raises(ValueError, match="ns_dtype"):
        Muon([nn.Parameter(torch.randn(3, 3))], ns_dtype=torch.int32)
    assert Muon([nn.Parameter(torch.randn(3, 3))], ns_dtype=torch.float64).defaults["ns_dtype"] == "float64"


def test_conv_kernel_is_viewed_as_out_by_in_kh_kw() -> None:
    grads4 = _grads([(6, 2, 3, 3)], 5, torch.float64, seed=4)
    grads2 = [[g.reshape(6, 18) for g in gs] for gs in grads4]
    k = _run(lambda ps: Muon(ps, ns_dtype="float64"), [(6, 2, 3, 3)], grads4, torch.float64)[0]
    m = _run(lambda ps: Muon(ps, ns_dtype="float64"), [(6, 18)], grads2, torch.float64)[0]
    assert torch.equal(k.reshape(6, 18), m)


def test_bfloat16_params_keep_buffer_intact_without_nesterov() -> None:
    p = nn.Parameter(torch.randn(5, 3).bfloat16())
    opt = Muon([p], nesterov=False, momentum=0.5)
    g = torch.randn(5, 3).bfloat16()
    p.grad = g.clone()
    opt.step()
    buf = opt.state[p]["momentum_buffer"]
    assert buf.dtype == torch.bfloat16
    assert torch.equal(buf, torch.zeros_like(g).lerp_(g, 0.5))  # torch.optim.Muon would normalise it in place


def test_grad_is_not_modified() -> None:
    p = nn.Parameter(torch.randn(4, 6, dtype=torch.float64))
    g = torch.randn(4, 6, dtype=torch.float64)
    opt = Muon([p])
    for _ in range(2):
        p.grad = g.clone()
        opt.step()
        assert torch.equal(p.grad, g)


# ------------------------------------------------------------------------------------------ nn.Module helper


class _Block(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.out_proj = nn.Linear(d, d, bias=False)
        self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(self.ln1(x)).chunk(3, -1)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.size(-1)), -1)
        x = x + self.out_proj(att @ v)
        return x + self.fc2(torch.relu(self.fc1(self.ln2(x))))


class _TinyLM(nn.Module):
    def __init__(self, vocab: int = 11, d: int = 8, ctx: int = 6, tie: bool = False) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos_embed = nn.Parameter(0.02 * torch.randn(ctx, d))
        self.blocks = nn.ModuleList([_Block(d), _Block(d)])
        self.ln_f = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, vocab, bias=False)
        if tie:
            self.lm_head.weight = self.tok.weight

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.tok(idx) + self.pos_embed[: idx.size(1)]
        for blk in self.blocks:
            x = blk(x)
        return self.lm_head(self.ln_f(x))


def _names(model: nn.Module, groups: list[dict]) -> dict[str, set[str]]:
    by_id = {id(p): n for n, p in model.named_parameters()}
    return {g["name"]: {by_id[id(p)] for p in g["params"]} for g in groups}


def test_param_groups_for_a_transformer() -> None:
    model = _TinyLM()
    groups = muon_param_groups(model, lr=0.02, adam_lr=1e-3, weight_decay=0.1, adam_weight_decay=0.01)
    names = _names(model, groups)
    hidden = {f"blocks.{i}.{m}.weight" for i in range(2) for m in ("qkv", "out_proj", "fc1", "fc2")}
    assert names["muon"] == hidden
    assert names["adamw"] == {"tok.weight", "pos_embed", "lm_head.weight"}
    assert all(n.endswith(("bias", "ln1.weight", "ln2.weight", "ln_f.weight")) for n in names["adamw_no_decay"])
    assert len(names["adamw_no_decay"]) == 2 * (2 + 2 + 3) + 2  # per block: 2 LN × 2, 3 biases; ln_f × 2
    n_params = sum(1 for _ in model.parameters())
    assert sum(len(g["params"]) for g in groups) == n_params
    opt = Muon(groups)
    by = {g["name"]: g for g in opt.param_groups}
    assert by["muon"]["use_muon"] is True and by["muon"]["weight_decay"] == 0.1
    assert by["adamw"]["lr"] == 1e-3 and by["adamw"]["adam_lr_ratio"] == 1.0
    assert by["adamw_no_decay"]["weight_decay"] == 0.0


def test_param_groups_tied_head_and_route_override() -> None:
    model = _TinyLM(tie=True)
    names = _names(model, muon_param_groups(model))
    assert names["adamw"] == {"tok.weight", "pos_embed"}  # the tied head is the embedding, listed once

    def route(name: str, p: nn.Parameter) -> str | None:
        if name == "pos_embed":
            return "muon"
        return "adamw" if name.startswith("blocks.1.fc") and p.ndim == 2 else None

    names = _names(model, muon_param_groups(model, route=route))
    assert "pos_embed" in names["muon"]
    assert {"blocks.1.fc1.weight", "blocks.1.fc2.weight"} <= names["adamw"]
    with pytest.raises(ValueError, match="route"):
        muon_param_groups(model, route=lambda n, p: "sgd")
    with pytest.raises(ValueError, match="ndim >= 2"):
        muon_param_groups(model, route=lambda n, p: "muon")


def test_conv_stem_is_the_input_layer_and_roles_override() -> None:
    """Roles come from module types: the first conv is the input layer (AdamW), the last Linear the head."""
    model = nn.Sequential()
    model.add_module("stem", nn.Conv2d(3, 4, 3))
    model.add_module("body", nn.Conv2d(4, 4, 3))
    model.add_module("classifier", nn.Linear(4, 2))
    names = _names(model, muon_param_groups(model))
    assert names["muon"] == {"body.weight"} and names["adamw"] == {"stem.weight", "classifier.weight"}
    model = _TinyLM()
    names = _names(model, muon_param_groups(model, roles={"pos_embed": "hidden", "lm_head.weight": Role.HIDDEN}))
    assert {"pos_embed", "lm_head.weight"} <= names["muon"] and names["adamw"] == {"tok.weight"}
    with pytest.raises(ValueError, match="not a parameter"):
        muon_param_groups(model, roles={"nope": "hidden"})
    with pytest.raises(ValueError, match="must be one of"):
        muon_param_groups(model, roles={"pos_embed": "matrix"})
    with pytest.raises(NotApplicable, match="no hidden matrices"):
        muon_param_groups(nn.Linear(3, 2), require_hidden=True)


# ------------------------------------------------------------------------------------------ hybrid resume


def _train(model: _TinyLM, opt: Muon, data: list[torch.Tensor], start: int, stop: int) -> None:
    for t in range(start, stop):
        idx = data[t]
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(idx[:, :-1]).flatten(0, 1), idx[:, 1:].flatten())
        loss.backward()
        opt.step()


@pytest.mark.parametrize("ns_dtype", ["bfloat16", "float32"])
def test_hybrid_resume_is_bitwise_identical(ns_dtype: str) -> None:
    g = torch.Generator().manual_seed(0)
    data = [torch.randint(0, 11, (3, 7), generator=g) for _ in range(10)]

    def make() -> tuple[_TinyLM, Muon]:
        torch.manual_seed(5)
        model = _TinyLM()
        return model, Muon(muon_param_groups(model, weight_decay=0.01, adam_weight_decay=0.01), ns_dtype=ns_dtype)

    m1, o1 = make()
    _train(m1, o1, data, 0, 10)
    m2, o2 = make()
    _train(m2, o2, data, 0, 6)
    buf = io.BytesIO()
    torch.save({"model": m2.state_dict(), "opt": o2.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    m3, o3 = make()
    m3.load_state_dict(saved["model"])
    o3.load_state_dict(saved["opt"])
    assert {g_["name"] for g_ in o3.param_groups} == {"muon", "adamw", "adamw_no_decay"}
    _train(m3, o3, data, 6, 10)
    for (n, a), b in zip(m1.state_dict().items(), m3.state_dict().values(), strict=True):
        assert torch.equal(a, b), n
    assert o3.state_dict()["state"].keys() == o1.state_dict()["state"].keys()


def test_registry_entry_and_deepcopy() -> None:
    spec = do.get("muon")
    assert spec.fixture_names == ("muon",)
    opt = spec.create([nn.Parameter(torch.randn(3, 3))])
    assert isinstance(opt, Muon) and opt.defaults["normalization"] == "keller"
    clone = copy.deepcopy(opt)
    assert clone.defaults["adjust_lr_fn"] == "keller" and clone._default_adam_lr_ratio == pytest.approx(0.015)
