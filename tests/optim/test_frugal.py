"""FRUGAL: golden fixtures, limiting cases (AdamW, signSGD), subsets, resume, memory ≈ ρ × AdamW."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

from descend.optim import FRUGAL, frugal_param_groups
from descend.optim.replay import replay_file

from ..conftest import fixture_files
from ..tolerances import accumulation_rtol


@pytest.mark.parametrize("path", fixture_files("frugal__"), ids=lambda p: p.stem)
def test_replays_reference_fixture(path) -> None:
    result = replay_file(path)
    assert result.passed, result


def test_descending_blocks_reproduce_the_recorded_choice_without_the_provider() -> None:
    """Block order "descending" is deterministic: our own rotation must give the reference's blocks."""
    (path,) = [p for p in fixture_files("frugal__") if "block_descending" in p.name]
    fx = json.loads(path.read_text())
    P = {n: torch.tensor(v["init"], dtype=torch.float64).reshape(v["shape"]).requires_grad_(True)
         for n, v in fx["params"].items()}
    hp = {k: v for k, v in fx["hyperparameters"].items() if k != "no_deprecation_warning"}
    hp["betas"] = tuple(hp["betas"])
    groups = [{"params": [P[n] for n in g["params"]], "is_proj_params": g["is_proj_params"]}
              for g in fx["param_groups"]]
    opt = FRUGAL(groups, projection="blocks", **hp)
    rtol, atol = fx["tolerance"]["rtol"], fx["tolerance"]["atol"]
    for t, grads in enumerate(fx["grads"]):
        for n, p in P.items():
            p.grad = torch.tensor(grads[n], dtype=torch.float64).reshape(p.shape)
        opt.step()
        for n, p in P.items():
            expected = torch.tensor(fx["trajectory"][t][n], dtype=torch.float64).reshape(p.shape)
            torch.testing.assert_close(p.detach(), expected, rtol=rtol, atol=atol)


# ------------------------------------------------------------------------------------ limiting cases


def _grads(shape: tuple[int, ...], n: int, seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=gen, dtype=torch.float64) for _ in range(n)]


@pytest.mark.parametrize("projection", ["columns", "rows", "randk", "svd", "random", "blocks"])
def test_full_density_without_resets_is_adamw(projection: str) -> None:
    w0 = torch.randn(5, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    a, b = nn.Parameter(w0.clone()), nn.Parameter(w0.clone())
    ours = FRUGAL([{"params": [a], "is_proj_params": True}], lr=1e-2, weight_decay=0.1, density=1.0,
                  projection=projection, update_gap=1000, reset_statistics=False, svd_dtype=torch.float64)
    ref = torch.optim.AdamW([b], lr=1e-2, weight_decay=0.1, eps=1e-8)
    for g in _grads((5, 3), 12):
        a.grad, b.grad = g.clone(), g.clone()
        ours.step()
        ref.step()
    # svd/random: the basis is orthogonal but Adam runs in the rotated coordinates -> only the span agrees
    if projection in ("svd", "random"):
        assert torch.isfinite(a).all()
    else:
        # the same AdamW arithmetic in two code paths: a few ulps per step over 12 steps (~1e-14 relative)
        tol = accumulation_rtol(4 * 12)
        torch.testing.assert_close(a.detach(), b.detach(), rtol=tol, atol=tol * float(b.detach().abs().max()))


def test_zero_density_is_sign_sgd_with_decoupled_decay() -> None:
    w0 = torch.randn(4, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    a = nn.Parameter(w0.clone())
    opt = FRUGAL([{"params": [a], "is_proj_params": True}], lr=1e-2, weight_decay=0.1, density=0.0,
                 projection="columns", inactive_lr_scale=0.5)
    x = w0.clone()
    for g in _grads((4, 6), 5):
        a.grad = g.clone()
        opt.step()
        x = x * (1 - 1e-2 * 0.1) - 1e-2 * 0.5 * g.sign()
    tol = accumulation_rtol(2 * 5)  # two rounded operations per step (multiply, subtract), 5 steps
    torch.testing.assert_close(a.detach(), x, rtol=tol, atol=tol * float(x.abs().max()))
    assert opt.state[a]["exp_avg"].numel() == 0


def test_svd_projection_sides_and_rank() -> None:
    tall, wide = nn.Parameter(torch.zeros(8, 4)), nn.Parameter(torch.zeros(4, 8))
    opt = FRUGAL([{"params": [tall, wide], "is_proj_params": True}], projection="svd", density=0.5)
    for p in (tall, wide):
        p.grad = torch.randn(p.shape, generator=torch.Generator().manual_seed(3))
    opt.step()
    assert opt.state[tall]["basis"].shape == (2, 4) and opt.state[tall]["exp_avg"].shape == (8, 2)  # right
    assert opt.state[wide]["basis"].shape == (4, 2) and opt.state[wide]["exp_avg"].shape == (2, 8)  # left
    basis = opt.state[tall]["basis"]
    torch.testing.assert_close(basis @ basis.T, torch.eye(2), atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------------ subsets and resume


def test_subset_provider_is_called_at_each_refresh_and_its_choice_is_used() -> None:
    calls = []

    def provider(step: int, projection: str, params: list[torch.Tensor]) -> list[list[int]]:
        calls.append((step, projection, len(params)))
        return [[step % 3] for _ in params]

    p = nn.Parameter(torch.zeros(2, 3, dtype=torch.float64))
    opt = FRUGAL([p], projection="columns", density=0.4, update_gap=4, subset_provider=provider)
    for g in _grads((2, 3), 9):
        p.grad = g
        opt.step()
    assert calls == [(1, "columns", 1), (5, "columns", 1), (9, "columns", 1)]
    assert opt.state[p]["indices"].tolist() == [0]


def _run(opt_kwargs: dict, steps: int, split: int | None) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(5)
    shapes = [(4, 6), (6, 4), (3, 3), (5,)]
    inits = [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]
    grads = [[torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes] for _ in range(steps)]
    params = [nn.Parameter(x.clone()) for x in inits]
    opt = FRUGAL(params, **opt_kwargs)
    for t in range(steps):
        if split is not None and t == split:
            state = copy.deepcopy(opt.state_dict())
            values = [p.detach().clone() for p in params]
            params = [nn.Parameter(v) for v in values]
            opt = FRUGAL(params, **{**opt_kwargs, "seed": 999})  # the generator state must come from the state
            opt.load_state_dict(state)
        for p, g in zip(params, grads[t], strict=True):
            p.grad = g.clone()
        opt.step()
    return [p.detach() for p in params]


@pytest.mark.parametrize("kwargs", [{"projection": "blocks", "block_order": "random", "density": 0.5},
                                    {"projection": "randk", "density": 0.3},
                                    {"projection": "random", "density": 0.5},
                                    {"projection": "rows", "density": 0.5}], ids=lambda k: k["projection"])
def test_resume_restores_the_random_generator_bitwise(kwargs: dict) -> None:
    kw = {"lr": 1e-2, "update_gap": 3, "seed": 7, **kwargs}
    straight, resumed = _run(kw, 14, None), _run(kw, 14, 8)
    assert all(torch.equal(a, b) for a, b in zip(straight, resumed, strict=True))
    other = _run({**kw, "seed": 8}, 14, None)
    assert any(not torch.equal(a, b) for a, b in zip(straight, other, strict=True))


@pytest.mark.parametrize("order", ["ascending", "descending", "mirror"])
def test_block_orders_rotate_through_all_tensors(order: str) -> None:
    params = [nn.Parameter(torch.zeros(2, 2)) for _ in range(4)]
    opt = FRUGAL(params, projection="blocks", block_order=order, density=0.5, update_gap=1)
    seen = []
    for _ in range(4):
        for p in params:
            p.grad = torch.ones(2, 2)
        opt.step()
        seen.append([i for i, p in enumerate(params) if "exp_avg" in opt.state[p]])
    expected = {"ascending": [[0, 1], [2, 3], [0, 1], [2, 3]],
                "descending": [[2, 3], [0, 1], [2, 3], [0, 1]],
                "mirror": [[0, 3], [1, 2], [0, 3], [1, 2]]}[order]
    assert seen == expected


def test_mirror_needs_an_even_number_of_active_blocks() -> None:
    with pytest.raises(ValueError, match="mirror"):
        FRUGAL([nn.Parameter(torch.zeros(2, 2)) for _ in range(3)], projection="blocks", block_order="mirror",
               density=0.34)


def test_matrix_projections_reject_non_matrices_in_projected_groups() -> None:
    with pytest.raises(ValueError, match="2-D"):
        FRUGAL([{"params": [nn.Parameter(torch.zeros(2, 2, 2))], "is_proj_params": True}], projection="svd")


# ------------------------------------------------------------------------------------ models and memory


class _Block(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.attn = nn.ModuleDict({k: nn.Linear(d, d, bias=False) for k in ("q_proj", "k_proj", "v_proj", "o_proj")})
        self.mlp = nn.ModuleDict({"up_proj": nn.Linear(d, 4 * d, bias=False),
                                  "down_proj": nn.Linear(4 * d, d, bias=False)})


class _TinyLM(nn.Module):
    def __init__(self, d: int = 64, layers: int = 2, vocab: int = 100) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(vocab, d)
        self.layers = nn.ModuleList(_Block(d) for _ in range(layers))
        self.lm_head = nn.Linear(d, vocab, bias=False)


def test_param_groups_project_attention_and_mlp_weights_only() -> None:
    model = _TinyLM(d=8, layers=1)
    regular, proj = frugal_param_groups(model)
    names = {id(p): n for n, p in model.named_parameters()}
    assert sorted(names[id(p)] for p in proj["params"]) == sorted(
        f"layers.0.{k}.weight" for k in ("attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.o_proj",
                                          "mlp.up_proj", "mlp.down_proj"))
    assert {names[id(p)] for p in regular["params"]} == {"embed_tokens.weight", "layers.0.norm.weight",
                                                         "layers.0.norm.bias", "lm_head.weight"}
    assert proj["is_proj_params"] and not regular["is_proj_params"]


def _state_bytes(opt: torch.optim.Optimizer, params: list[torch.Tensor], keys: tuple[str, ...] | None = None) -> int:
    total = 0
    for p in params:
        for k, v in opt.state.get(p, {}).items():
            if isinstance(v, torch.Tensor) and (keys is None or k in keys):
                total += v.numel() * v.element_size()
    return total


# (projection, bound on moments / (ρ · AdamW), bound on all state / (ρ · AdamW))
_MEMORY = [("columns", 1.1, 1.1), ("rows", 1.1, 1.1), ("svd", 1.1, 1.3), ("random", 1.1, 1.3),
           ("randk", 1.1, 2.1)]


@pytest.mark.parametrize(("projection", "moments_bound", "total_bound"), _MEMORY, ids=[m[0] for m in _MEMORY])
def test_state_memory_is_about_density_times_adamw(projection: str, moments_bound: float,
                                                   total_bound: float) -> None:
    """Projected tensors of a transformer-like model keep ≈ ρ of AdamW's state (plus the basis/indices)."""
    rho = 0.25
    model = _TinyLM()
    regular, proj = frugal_param_groups(model)
    opt = FRUGAL([regular, proj], projection=projection, density=rho)
    adamw = torch.optim.AdamW(proj["params"])
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    opt.step()
    adamw.step()
    full = _state_bytes(adamw, proj["params"], ("exp_avg", "exp_avg_sq"))
    moments = _state_bytes(opt, proj["params"], ("exp_avg", "exp_avg_sq"))
    total = _state_bytes(opt, proj["params"])
    assert moments <= moments_bound * rho * full
    assert total <= total_bound * rho * full
    for p in regular["params"]:  # regular params keep full AdamW moments
        assert opt.state[p]["exp_avg"].shape == p.shape


def test_block_state_memory_over_a_rotation_cycle() -> None:
    """Blocks: only active tensors hold moments; over a full rotation the mean is ρ × AdamW."""
    rho = 0.25
    model = _TinyLM()
    regular, proj = frugal_param_groups(model)  # 12 tensors -> 3 active, a cycle of 4 refreshes
    opt = FRUGAL([regular, proj], projection="blocks", density=rho, update_gap=1)
    full = 2 * 4 * sum(p.numel() for p in proj["params"])
    used = []
    for _ in range(4):
        for p in model.parameters():
            p.grad = torch.randn_like(p)
        opt.step()
        used.append(_state_bytes(opt, proj["params"], ("exp_avg", "exp_avg_sq")))
        assert sum("exp_avg" in opt.state[p] for p in proj["params"]) == 3
    assert sum(used) / len(used) <= 1.1 * rho * full
