"""Parameter roles from module types (descend.optim.roles) and the group builders that use them."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import descend.optim as do
from descend.optim.roles import NO_HIDDEN_MATRICES, NotApplicable, Role, declare_roles, names_by_role, param_roles


def _mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(40, 32), nn.GELU(), nn.Linear(32, 32), nn.GELU(), nn.Linear(32, 10))


def _groups(model: nn.Module, groups: list[dict]) -> dict[str, set[str]]:
    by_id = {id(p): n for n, p in model.named_parameters()}
    return {g.get("name", str(i)): {by_id[id(p)] for p in g["params"]} for i, g in enumerate(groups)}


def test_plain_sequential_mlp_routes_input_and_output_layers_to_adamw() -> None:
    """Names "0", "2", "4" say nothing; the module types do: first Linear = input, last = head."""
    model = _mlp()
    assert names_by_role(model) == {"0.weight": Role.INPUT, "0.bias": Role.VECTOR, "2.weight": Role.HIDDEN,
                                    "2.bias": Role.VECTOR, "4.weight": Role.HEAD, "4.bias": Role.VECTOR}
    groups = _groups(model, do.muon_param_groups(model))
    assert groups == {"muon": {"2.weight"}, "adamw": {"0.weight", "4.weight"},
                      "adamw_no_decay": {"0.bias", "2.bias", "4.bias"}}
    # the registry hook (what the benchmark calls) routes the same way, with the AdamW lr given absolutely
    hp = {**do.get("muon").defaults, "adam_lr": 3e-3}
    built = do.get("muon").module_groups(model, hp)
    assert _groups(model, built)["muon"] == {"2.weight"}
    assert {g["name"]: g["lr"] for g in built}["adamw"] == 3e-3


def test_forward_order_overrides_registration_order() -> None:
    class HeadFirst(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = nn.Linear(8, 3)  # registered first, called last
            self.body = nn.Linear(8, 8)
            self.stem = nn.Linear(5, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(torch.relu(self.body(torch.relu(self.stem(x)))))

    model = HeadFirst()
    by_registration = names_by_role(model)
    assert by_registration["head.weight"] is Role.INPUT and by_registration["stem.weight"] is Role.HEAD
    by_use = names_by_role(model, param_roles(model, example_input=torch.zeros(2, 5)))
    assert by_use["stem.weight"] is Role.INPUT and by_use["body.weight"] is Role.HIDDEN
    assert by_use["head.weight"] is Role.HEAD
    assert not any(h for m in model.modules() for h in m._forward_pre_hooks.values())  # hooks removed


class _LM(nn.Module):
    def __init__(self, tie: bool = False) -> None:
        super().__init__()
        self.tok = nn.Embedding(50, 16)
        self.pos = nn.Parameter(torch.zeros(8, 16))  # a positional table: a raw 2-D parameter
        self.fc1, self.fc2 = nn.Linear(16, 32), nn.Linear(32, 16)
        self.norm = nn.LayerNorm(16)
        self.out = nn.Linear(16, 50, bias=False)
        if tie:
            self.out.weight = self.tok.weight


def test_embeddings_positional_tables_norms_and_tied_heads() -> None:
    roles = names_by_role(_LM())
    assert roles["tok.weight"] is Role.EMBEDDING and roles["pos"] is Role.EMBEDDING
    assert roles["fc1.weight"] is Role.HIDDEN, "with an embedding, the first Linear is a hidden layer"
    assert roles["fc2.weight"] is Role.HIDDEN and roles["out.weight"] is Role.HEAD
    assert roles["norm.weight"] is Role.VECTOR and roles["norm.bias"] is Role.VECTOR
    tied = _LM(tie=True)
    assert names_by_role(tied)["tok.weight"] is Role.EMBEDDING  # the tied head is the embedding
    assert _groups(tied, do.muon_param_groups(tied))["adamw"] == {"tok.weight", "pos"}
    bn = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 3), nn.Flatten(), nn.Linear(4, 2))
    assert names_by_role(bn)["1.weight"] is Role.VECTOR


def test_raw_matrices_without_an_embedding_are_hidden_and_convs_start_with_the_input() -> None:
    class Bilinear(nn.Module):  # e.g. linear self-attention: custom matrices, no embedding
        def __init__(self) -> None:
            super().__init__()
            self.w_kq = nn.Parameter(torch.randn(4, 4))
            self.w_pv = nn.Parameter(torch.randn(4, 4))

    assert set(names_by_role(Bilinear()).values()) == {Role.HIDDEN}
    cnn = nn.Sequential(nn.Conv1d(1, 4, 5), nn.Conv1d(4, 4, 3), nn.Conv1d(4, 4, 3), nn.Flatten(), nn.LazyLinear(10))
    cnn(torch.zeros(2, 1, 20))  # materialise the lazy head
    roles = names_by_role(cnn)
    assert roles["0.weight"] is Role.INPUT and roles["1.weight"] is Role.HIDDEN and roles["2.weight"] is Role.HIDDEN
    assert roles["4.weight"] is Role.HEAD


def test_a_single_linear_layer_has_no_hidden_matrix() -> None:
    """Logistic regression: its one matrix is the head; Muon has nothing to do (n/a), not AdamW in disguise."""
    model = nn.Linear(30, 2)
    assert names_by_role(model) == {"weight": Role.HEAD, "bias": Role.VECTOR}
    with pytest.raises(NotApplicable, match=NO_HIDDEN_MATRICES):
        do.get("muon").module_groups(model, dict(do.get("muon").defaults))
    assert _groups(model, do.muon_param_groups(model)) == {"adamw": {"weight"}, "adamw_no_decay": {"bias"}}


def test_overrides_and_declarations() -> None:
    model = _mlp()
    assert param_roles(model, {"0.weight": "hidden"})[model[0].weight] is Role.HIDDEN
    assert param_roles(model, {model[4].weight: Role.HIDDEN})[model[4].weight] is Role.HIDDEN
    declare_roles(model, {"4.weight": "hidden"})
    assert names_by_role(model)["4.weight"] is Role.HIDDEN
    assert _groups(model, do.muon_param_groups(model))["muon"] == {"2.weight", "4.weight"}
    # an explicit override beats the declaration
    assert param_roles(model, {"4.weight": "head"})[model[4].weight] is Role.HEAD
    with pytest.raises(ValueError, match="not a parameter of the model"):
        declare_roles(model, {"9.weight": "hidden"})
    with pytest.raises(ValueError, match="must be one of"):
        declare_roles(model, {"0.weight": "matrix"})
    with pytest.raises(ValueError, match="parameter names or parameters"):
        param_roles(model, {nn.Parameter(torch.zeros(2, 2)): "hidden"})
    assert names_by_role(model)["4.weight"] is Role.HIDDEN, "a failed declaration leaves the previous one"
    with pytest.raises(ValueError, match="Muon needs ndim >= 2"):
        do.muon_param_groups(model, roles={"0.bias": "hidden"})


class _EmbeddingOnly(nn.Module):
    """Trainable: a token embedding and a positional table; the head is frozen (so gradients match)."""

    def __init__(self) -> None:
        super().__init__()
        self.tok = nn.Embedding(20, 8)
        self.pos = nn.Parameter(0.1 * torch.randn(5, 8))
        self.out = nn.Linear(8, 20)
        self.out.requires_grad_(False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.tok(idx) + self.pos[: idx.shape[1]]))


def _train(model: nn.Module, opt: torch.optim.Optimizer, idx: torch.Tensor, steps: int = 5) -> None:
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(idx).flatten(0, 1), idx.flatten()).backward()
        opt.step()


def test_soap_and_shampoo_builders_give_embeddings_plain_adam() -> None:
    from descend.optim.shampoo import shampoo_param_groups
    from descend.optim.soap import soap_param_groups

    lm = _LM()
    for build in (soap_param_groups, shampoo_param_groups):
        groups = _groups(lm, build(lm))
        assert groups["adam"] == {"tok.weight", "pos"}
        assert {"fc1.weight", "fc2.weight", "out.weight"} <= groups[next(k for k in groups if k != "adam")]
    mlp = _mlp()
    assert set(_groups(mlp, soap_param_groups(mlp))) == {"soap"}  # no embedding: one group, as before

    idx = torch.randint(0, 20, (4, 5), generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    a = _EmbeddingOnly()
    torch.manual_seed(0)
    b = _EmbeddingOnly()
    soap = do.SOAP(soap_param_groups(a), lr=1e-2)
    _train(a, soap, idx)
    assert all(set(soap.state[p]) == {"exp_avg", "exp_avg_sq", "step"} for p in (a.tok.weight, a.pos))  # no factors

    # Shampoo's Adam group is AdamW exactly (grafting, never preconditioned); float32, 5 steps of lr 1e-2:
    # both sides round ~10 float32 operations per step on values O(1), so they agree to ~1e-6
    torch.manual_seed(0)
    a = _EmbeddingOnly()
    sh = do.Shampoo(shampoo_param_groups(a), lr=1e-2, weight_decay=0.01, precondition_frequency=1)
    ref = torch.optim.AdamW([b.tok.weight, b.pos], lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    _train(a, sh, idx)
    _train(b, ref, idx)
    torch.manual_seed(0)
    assert (a.tok.weight - _EmbeddingOnly().tok.weight).abs().max() > 1e-3  # it trained
    torch.testing.assert_close(a.tok.weight, b.tok.weight, rtol=0, atol=1e-6)
    torch.testing.assert_close(a.pos, b.pos, rtol=0, atol=1e-6)


def test_frugal_projects_hidden_matrices_only_and_is_na_without_them() -> None:
    spec = do.get("frugal")
    model = _mlp()
    groups = spec.module_groups(model, dict(spec.defaults))
    by_flag = {g["is_proj_params"]: _groups(model, [g])["0"] for g in groups}
    assert by_flag[True] == {"2.weight"}
    assert by_flag[False] == {"0.weight", "0.bias", "2.bias", "4.weight", "4.bias"}
    cnn = nn.Sequential(nn.Conv1d(1, 4, 3), nn.Conv1d(4, 4, 3), nn.Flatten(), nn.Linear(4, 8), nn.Linear(8, 2))
    proj = {g["is_proj_params"]: _groups(cnn, [g])["0"] for g in spec.module_groups(cnn, {"projection": "svd"})}
    assert proj[True] == {"3.weight"}, "svd projects 2-D matrices only: the hidden conv kernel stays regular"
    with pytest.raises(NotApplicable, match=NO_HIDDEN_MATRICES):
        spec.module_groups(nn.Linear(3, 2), dict(spec.defaults))
    # the reference's name-based selection is still the default of frugal_param_groups
    assert do.frugal_param_groups(model)[1]["params"] == []


def test_declared_roles_survive_a_deepcopy() -> None:
    import copy

    model = _mlp()
    declare_roles(model, {model[4].weight: "hidden"})
    clone = copy.deepcopy(model)
    assert names_by_role(clone)["4.weight"] is Role.HIDDEN
