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
