"""Adam-mini: the block partitions, the module-derived partition against the reference's name rules, live
agreement with ``adam-mini==1.1.1``, the state memory, validation.

The reference's recorded trajectories (``adam_mini__*.json``) are replayed by tests/optim/test_replay.py.
"""

from __future__ import annotations

import contextlib
import io
import math

import pytest
import torch
from torch import nn

from descend.optim import AdamMini, adam_mini_param_groups
from descend.optim.adam_mini import adam_mini_reference_groups, blocks_of

F64 = torch.float64


class _Attn(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q_proj, self.k_proj = nn.Linear(d, d, bias=False), nn.Linear(d, d, bias=False)
        self.v_proj, self.o_proj = nn.Linear(d, d, bias=False), nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = (f(x).view(B, T, self.heads, D // self.heads).transpose(1, 2)
                   for f in (self.q_proj, self.k_proj, self.v_proj))
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(D // self.heads), dim=-1) @ v
        return self.o_proj(a.transpose(1, 2).reshape(B, T, D))


class _Mlp(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.fc, self.proj = nn.Linear(d, 2 * d), nn.Linear(2 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(torch.tanh(self.fc(x)))


class ToyLM(nn.Module):
    """A one-layer transformer whose parameter names also satisfy the reference's keyword rules."""

    def __init__(self, vocab: int = 7, d: int = 8, heads: int = 2) -> None:
        super().__init__()
        self.embd = nn.Embedding(vocab, d)
        self.ln_1 = nn.LayerNorm(d)
        self.attn = _Attn(d, heads)
        self.ln_2 = nn.LayerNorm(d)
        self.mlp = _Mlp(d)
        self.lm_head = nn.Linear(d, vocab, bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.embd(idx)
        x = x + self.attn(self.ln_1(x))
        x = x + self.mlp(self.ln_2(x))
        return self.lm_head(x)


def _model(seed: int = 0) -> ToyLM:
    torch.manual_seed(seed)
    m = ToyLM().to(F64)
    with torch.no_grad():  # non-trivial norm parameters, so that their blocks matter
        for ln in (m.ln_1, m.ln_2):
            ln.weight.add_(0.1 * torch.randn_like(ln.weight))
            ln.bias.add_(0.1 * torch.randn_like(ln.bias))
    return m


def _train(model: ToyLM, opt: torch.optim.Optimizer, steps: int, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, 7, (3, 5), generator=g)
        target = torch.randint(0, 7, (3, 5), generator=g)
        opt.zero_grad()
        nn.functional.cross_entropy(model(idx).reshape(-1, 7), target.reshape(-1)).backward()
        opt.step()


def test_blocks() -> None:
    assert blocks_of((6, 4), "row") == ((4, 6),)
    assert blocks_of((6, 4), "auto") == ((4, 6),)
    assert blocks_of((5,), "auto") == ((5, 1),) and blocks_of((5,), "row") == ((1, 5),)
    assert blocks_of((6, 4), "tensor") == ((24, 1),)
    assert blocks_of((6, 4), "elementwise") == ((1, 24),)
    assert blocks_of((8, 8), "head", 16) == ((16, 4),)  # dim 8, 4 heads: 4 blocks of 2 rows
    assert blocks_of((4, 8), "head", 16) == ((16, 2),)  # grouped-query key: 2 kv heads
    assert blocks_of((24, 8), "qkv", 16) == ((16, 8), (8, 8))  # q and k per head, v per row
    assert blocks_of((3, 2, 2, 2), "row") == ((8, 3),)
    with pytest.raises(ValueError, match="head_numel"):
        blocks_of((6, 4), "head", 5)
    with pytest.raises(ValueError, match="qkv"):
        blocks_of((8, 8), "qkv", 16)


def test_block_statistics_match_a_direct_computation() -> None:
    # one step from zero state: v_b = (1-β2) mean_b(g²), W -= lr·g/(sqrt(mean_b(g²)) + eps) exactly (bias
    # corrections cancel at t = 1); float64, agreement to rounding (rtol 1e-13)
    g = torch.randn(8, 8, generator=torch.Generator().manual_seed(0), dtype=F64)
    for partition, head_numel, blocks in (("row", None, g.view(8, 8)), ("head", 16, g.view(4, 16)),
                                          ("tensor", None, g.view(1, 64)), ("elementwise", None, g.view(64, 1))):
        w = torch.zeros(8, 8, dtype=F64, requires_grad=True)
        opt = AdamMini([w], lr=0.1, eps=1e-8, partition=partition, head_numel=head_numel)
        w.grad = g.clone()
        opt.step()
        rms = blocks.square().mean(dim=1, keepdim=True).sqrt()
        expected = -0.1 * (blocks / (rms + 1e-8)).view(8, 8)
        torch.testing.assert_close(w.detach(), expected, rtol=1e-13, atol=0)
        assert opt.state[w]["exp_avg_sq"].shape == (blocks.shape[0],)


def test_module_partition_follows_module_structure() -> None:
    m = _model()
    groups = adam_mini_param_groups(m, n_heads=2, query_key=[m.attn.q_proj, m.attn.k_proj], weight_decay=0.1)
    names = {id(p): n for n, p in m.named_parameters()}
    got = {names[id(p)]: (g["partition"], g["head_numel"], g["weight_decay"]) for g in groups for p in g["params"]}
    assert got == {
        "embd.weight": ("row", None, 0.1), "lm_head.weight": ("row", None, 0.1),
        "attn.q_proj.weight": ("head", 32, 0.1), "attn.k_proj.weight": ("head", 32, 0.1),
        "attn.v_proj.weight": ("row", None, 0.1), "attn.o_proj.weight": ("row", None, 0.1),
        "attn.o_proj.bias": ("elementwise", None, 0.0),
        "mlp.fc.weight": ("row", None, 0.1), "mlp.fc.bias": ("elementwise", None, 0.0),
        "mlp.proj.weight": ("row", None, 0.1), "mlp.proj.bias": ("elementwise", None, 0.0),
        "ln_1.weight": ("tensor", None, 0.0), "ln_1.bias": ("elementwise", None, 0.0),
        "ln_2.weight": ("tensor", None, 0.0), "ln_2.bias": ("elementwise", None, 0.0),
    }
    # names play no part: the same model under meaningless names gets the same partition
    seq = nn.Sequential(nn.Embedding(7, 8), nn.LayerNorm(8), nn.Linear(8, 8), nn.Linear(8, 7))
    parts = [g["partition"] for g in adam_mini_param_groups(seq)]
    assert parts == ["row", "tensor", "elementwise"]


def test_multihead_attention_is_split_per_head() -> None:
    mha = nn.MultiheadAttention(8, 4)
    groups = adam_mini_param_groups(nn.ModuleDict({"a": mha}))
    by = {id(p): (g["partition"], g["head_numel"]) for g in groups for p in g["params"]}
    assert by[id(mha.in_proj_weight)] == ("qkv", 16)
    assert by[id(mha.out_proj.weight)] == ("row", None)
    assert by[id(mha.in_proj_bias)] == ("elementwise", None)
    with pytest.raises(ValueError, match="n_heads"):
        adam_mini_param_groups(_model(), query_key=[_model().attn.q_proj])


def _reference(model: nn.Module, **kw: object) -> torch.optim.Optimizer:
    from adam_mini import Adam_mini  # the reference; a dev extra

    with contextlib.redirect_stdout(io.StringIO()):  # it prints its partition once at the first step
        return Adam_mini(list(model.named_parameters()), dim=8, n_heads=2, verbose=False, **kw)


@pytest.mark.parametrize("hp", [{"lr": 1e-2, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0},
                                {"lr": 3e-3, "betas": (0.9, 0.95), "eps": 1e-6, "weight_decay": 0.1}])
def test_live_against_the_reference(hp: dict) -> None:
    """12 closed-loop steps of the toy LM against ``adam-mini==1.1.1``, once with the reference's name rules and
    once with the module-derived partition (the same partition on this model).

    Tolerance: both compute the same float64 operations in a different association order (a few ulps per
    step); Adam-mini's update is a ratio m/sqrt(v) of well-scaled quantities (condition ~1), and 12 steps of the
    closed loop amplify by at most the loss's curvature times lr ≪ 1, so rtol 1e-11 (atol 1e-13) leaves >100x room.
    """
    pytest.importorskip("adam_mini")
    ref_model = _model()
    with contextlib.redirect_stdout(io.StringIO()):
        _train(ref_model, _reference(ref_model, **hp), 12)
    named = _model()
    _train(named, AdamMini(adam_mini_reference_groups(named.named_parameters(), dim=8, n_heads=2,
                                                      weight_decay=hp["weight_decay"]), **hp), 12)
    derived = _model()
    groups = adam_mini_param_groups(derived, n_heads=2, query_key=[derived.attn.q_proj, derived.attn.k_proj])
    _train(derived, AdamMini(groups, **hp), 12)
    moved = max(float((p - q).detach().abs().max()) for p, q in zip(ref_model.parameters(), _model().parameters(),
                                                             strict=True))
    assert moved > 1e-3  # the comparison is not between untouched parameters
    for ours in (named, derived):
        for (n, p), q in zip(ref_model.named_parameters(), ours.parameters(), strict=True):
            torch.testing.assert_close(q, p, rtol=1e-11, atol=1e-13, msg=n)


def test_state_memory_is_about_half_of_adamw() -> None:
    torch.manual_seed(0)
    model = ToyLM(vocab=64, d=32, heads=4)
    groups = adam_mini_param_groups(model, n_heads=4, query_key=[model.attn.q_proj, model.attn.k_proj])
    opts = {"adam_mini": AdamMini(groups), "adamw": torch.optim.AdamW(model.parameters())}
    for opt in opts.values():
        for p in model.parameters():
            p.grad = torch.randn_like(p)
        opt.step()
    nbytes = {k: sum(t.numel() * t.element_size() for st in o.state.values() for key, t in st.items()
                     if key != "step") for k, o in opts.items()}
    n = sum(p.numel() for p in model.parameters())
    ratio = nbytes["adam_mini"] / nbytes["adamw"]
    # m is element-wise (n numbers), v has one number per block: rows, heads, biases element-wise
    assert 0.5 < ratio < 0.56, ratio
    assert nbytes["adamw"] == 8 * n


def test_per_group_weight_decay_and_validation() -> None:
    w = nn.Parameter(torch.ones(4, 3, dtype=F64))
    b = nn.Parameter(torch.ones(4, dtype=F64))
    opt = AdamMini([{"params": [w]}, {"params": [b], "weight_decay": 0.0}], lr=0.1, weight_decay=0.5)
    w.grad, b.grad = torch.zeros_like(w), torch.zeros_like(b)
    opt.step()  # zero gradients: only the decay moves W
    torch.testing.assert_close(w.detach(), torch.full_like(w, 0.95), rtol=1e-15, atol=0)
    assert torch.equal(b.detach(), torch.ones_like(b))
    with pytest.raises(ValueError, match="partition"):
        AdamMini([w], partition="per_layer")
    with pytest.raises(ValueError, match="head_numel"):
        AdamMini([w], partition="head", head_numel=5)  # 12 elements do not split into heads of 5
    before = len(opt.param_groups)
    with pytest.raises(ValueError, match="head_numel"):
        opt.add_param_group({"params": [nn.Parameter(torch.ones(3, 3))], "partition": "head", "head_numel": 2})
    assert len(opt.param_groups) == before
    with pytest.raises(ValueError, match="n_kv_heads"):
        adam_mini_reference_groups([("wq", w)], dim=4, n_heads=4, n_kv_heads=3)
