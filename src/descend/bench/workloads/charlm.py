"""Character-level (byte-level) transformer language model on the Python standard library's source.

The corpus is the ``.py`` files of the running interpreter's standard library (tests and IDLE excluded),
split into training, validation and test **by file** (a file goes to validation when an MD5 of its relative
path is 0 mod 10, to test when it is 1 mod 10), the training stream truncated to ``corpus_bytes`` and the two
held-out streams to ``corpus_bytes // 10``; the vocabulary is the 256 byte values.  Validation (tuning) and
test (reporting) losses at the end of training are each measured on ``eval_tokens`` = 65 536 predicted bytes
(``eval_tokens / context`` non-overlapping windows evenly spaced over the stream); the intermediate points of
the curve use every 8th of those validation windows (8 192 bytes), to keep evaluation cheap.  The model is a small
pre-LayerNorm GPT (learned positions, causal attention, GELU MLP, untied head).  Scales go from ~0.2M to
~5M parameters.  The corpus depends on the Python version; the report records it.
"""

from __future__ import annotations

import hashlib
import math
import sysconfig
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from ._data import cached
from .base import Task, Workload, register_workload


def _corpus(limit: int) -> dict[str, torch.Tensor]:
    root = Path(sysconfig.get_paths()["stdlib"])
    streams = {"train": bytearray(), "val": bytearray(), "test": bytearray()}
    caps = {"train": limit, "val": limit // 10, "test": limit // 10}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(("test/", "idlelib/", "site-packages/", "lib2to3/tests")) or "/tests/" in rel:
            continue
        bucket = int(hashlib.md5(rel.encode()).hexdigest(), 16) % 10
        target = "val" if bucket == 0 else "test" if bucket == 1 else "train"
        if len(streams[target]) < caps[target]:
            streams[target] += path.read_bytes() + b"\n"
        if all(len(streams[k]) >= caps[k] for k in streams):
            break
    return {k: torch.frombuffer(bytearray(v[: caps[k]]), dtype=torch.uint8).clone() for k, v in streams.items()}


def _check(limit: int, need: int) -> Callable[[dict[str, Any]], bool]:
    def check(d: dict[str, Any]) -> bool:
        return (set(d) == {"train", "val", "test"} and all(d[k].dtype == torch.uint8 and d[k].ndim == 1 for k in d)
                and 0 < len(d["train"]) <= limit and need <= len(d["val"]) <= limit // 10
                and need <= len(d["test"]) <= limit // 10)

    return check


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
    description = "byte-level GPT on the Python standard library's source (train/val/test split by file)"
    scales: ClassVar[dict[str, dict[str, Any]]] = {
        "s": {"d": 64, "layers": 2, "heads": 4, "context": 64, "batch": 16},      # ~0.2M parameters
        "m": {"d": 128, "layers": 4, "heads": 4, "context": 128, "batch": 16},    # ~0.9M
        "l": {"d": 256, "layers": 6, "heads": 8, "context": 128, "batch": 16},    # ~5M
    }
    budget: ClassVar[dict[str, int]] = {"s": 400, "m": 1000, "l": 2000}
    corpus_bytes: ClassVar[int] = 2_000_000
    #: predicted bytes per held-out evaluation (validation and test alike)
    eval_tokens: ClassVar[int] = 65_536

    def build(self, seed: int, scale: str) -> Task:
        s = self.settings(scale)
        ctx, batch = s["context"], s["batch"]
        data = cached(f"charlm/stdlib/{sysconfig.get_python_version()}/{self.corpus_bytes}/v2",
                      lambda: _corpus(self.corpus_bytes),
                      check=_check(self.corpus_bytes, self.eval_tokens + ctx + 1))
        train, val, test = data["train"].long(), data["val"].long(), data["test"].long()
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

        n_windows = -(-self.eval_tokens // ctx)

        def starts(source: torch.Tensor) -> torch.Tensor:
            return torch.linspace(0, len(source) - ctx - 2, n_windows).long()

        held_out = {"val": (val, starts(val)), "test": (test, starts(test))}

        @torch.no_grad()
        def loss_on(source: torch.Tensor, at: torch.Tensor) -> float:
            total = 0.0
            for chunk in at.split(256):  # bounded memory: 256 windows per forward pass
                x, y = windows(source, chunk)
                total += F.cross_entropy(model(x).flatten(0, 1), y.flatten(), reduction="sum").item()
            return total / (len(at) * ctx)

        def final_evaluate() -> dict[str, float]:
            out: dict[str, float] = {}
            for split_name, (source, at) in held_out.items():
                loss = loss_on(source, at)
                out[f"{split_name}_loss"] = loss
                out[f"{split_name}_bits_per_byte"] = loss / math.log(2)
            return out

        def evaluate() -> dict[str, float]:
            # intermediate checkpoints (the curve): every 8th validation window, 8 192 predicted bytes
            loss = loss_on(val, held_out["val"][1][::8])
            return {"val_loss": loss, "val_bits_per_byte": loss / math.log(2)}

        # declared, not guessed: the learned positional table is an embedding, the untied output layer the head
        return Task(params=list(model.parameters()), train_loss=train_loss, evaluate=evaluate,
                    final_evaluate=final_evaluate, model=model, roles={"pos": "embedding", "head.weight": "head"},
                    info={"n_params": sum(p.numel() for p in model.parameters())})
