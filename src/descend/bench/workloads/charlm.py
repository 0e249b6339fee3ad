"""Character-level (byte-level) transformer language model on the Python standard library's source.

The corpus is the ``.py`` files of the running interpreter's standard library (tests and IDLE excluded),
split into training and validation **by file** (a file goes to validation when a hash of its relative path
is 0 mod 10), truncated to ``corpus_bytes``; the vocabulary is the 256 byte values.  The model is a small
pre-LayerNorm GPT (learned positions, causal attention, GELU MLP, untied head).  Scales go from ~0.2M to
~5M parameters.  The corpus depends on the Python version; the report records it.
"""

from __future__ import annotations

import hashlib
import math
import sysconfig
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from ._data import cached
from .base import Task, Workload, register_workload


def _corpus(limit: int) -> dict[str, torch.Tensor]:
    root = Path(sysconfig.get_paths()["stdlib"])
    train, val = bytearray(), bytearray()
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(("test/", "idlelib/", "site-packages/", "lib2to3/tests")) or "/tests/" in rel:
            continue
        data = path.read_bytes()
        to_val = int(hashlib.md5(rel.encode()).hexdigest(), 16) % 10 == 0
        target = val if to_val else train
        if len(target) < (limit // 10 if to_val else limit):
            target += data + b"\n"
        if len(train) >= limit and len(val) >= limit // 10:
            break
    return {"train": torch.frombuffer(bytes(train[:limit]), dtype=torch.uint8).clone(),
            "val": torch.frombuffer(bytes(val[: limit // 10]), dtype=torch.uint8).clone()}


class _Block(torch.nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = torch.nn.LayerNorm(d), torch.nn.LayerNorm(d)
        self.qkv = torch.nn.Linear(d, 3 * d)
        self.proj = torch.nn.Linear(d, d)
        self.fc = torch.nn.Linear(d, 4 * d)
        self.out = torch.nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(D, dim=2)
        q, k, v = (t.view(B, T, self.heads, D // self.heads).transpose(1, 2) for t in (q, k, v))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, D)
        x = x + self.proj(a)
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class TinyGPT(torch.nn.Module):
    """A pre-LayerNorm decoder-only transformer over bytes."""

    def __init__(self, d: int, layers: int, heads: int, context: int, vocab: int = 256) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, d)
        self.pos = torch.nn.Parameter(torch.zeros(context, d))
        self.blocks = torch.nn.ModuleList([_Block(d, heads) for _ in range(layers)])
        self.ln = torch.nn.LayerNorm(d)
        self.head = torch.nn.Linear(d, vocab, bias=False)
        for name, p in self.named_parameters():
            residual = name.endswith(("proj.weight", "out.weight"))  # GPT-2's scaled init of residual projections
            if p.ndim == 2 and name != "pos":
                torch.nn.init.normal_(p, std=0.02 / (math.sqrt(2 * layers) if residual else 1))
            elif name.endswith("bias"):
                torch.nn.init.zeros_(p)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.embed(idx) + self.pos[: idx.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln(x))


@register_workload
class CharLM(Workload):
    name = "charlm_stdlib"
    description = "byte-level GPT on the Python standard library's source (train/val split by file)"
    scales: ClassVar[dict[str, dict[str, Any]]] = {
        "s": {"d": 64, "layers": 2, "heads": 4, "context": 64, "batch": 16},      # ~0.2M parameters
        "m": {"d": 128, "layers": 4, "heads": 4, "context": 128, "batch": 16},    # ~0.9M
        "l": {"d": 256, "layers": 6, "heads": 8, "context": 128, "batch": 16},    # ~5M
    }
    budget: ClassVar[dict[str, int]] = {"s": 400, "m": 1000, "l": 2000}
    corpus_bytes: ClassVar[int] = 2_000_000

    def build(self, seed: int, scale: str) -> Task:
        s = self.settings(scale)
        data = cached(f"charlm/stdlib/{sysconfig.get_python_version()}/{self.corpus_bytes}/v1",
                      lambda: _corpus(self.corpus_bytes))
        train, val = data["train"].long(), data["val"].long()
        ctx, batch = s["context"], s["batch"]
        torch.manual_seed(seed)
        model = TinyGPT(s["d"], s["layers"], s["heads"], ctx)

        def windows(source: torch.Tensor, starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            offs = starts[:, None] + torch.arange(ctx + 1)
            chunk = source[offs]
            return chunk[:, :-1], chunk[:, 1:]

        def train_loss(step: int) -> torch.Tensor:
            g = torch.Generator().manual_seed((seed * 1_000_003 + step) % (2**63 - 1))
            x, y = windows(train, torch.randint(0, len(train) - ctx - 1, (batch,), generator=g))
            return F.cross_entropy(model(x).flatten(0, 1), y.flatten())

        val_starts = torch.linspace(0, len(val) - ctx - 2, 64).long()

        @torch.no_grad()
        def evaluate() -> dict[str, float]:
            x, y = windows(val, val_starts)
            loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten()).item()
            return {"val_loss": loss, "val_bits_per_byte": loss / math.log(2)}

        return Task(params=list(model.parameters()), train_loss=train_loss, evaluate=evaluate, model=model,
                    info={"n_params": sum(p.numel() for p in model.parameters())})
