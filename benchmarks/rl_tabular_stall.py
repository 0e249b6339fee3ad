"""Why N-HARPG misses the 5 % target of benchmarks/rl_tabular.py: where the runs end, not only how far.

    python benchmarks/rl_tabular_stall.py                          # seeds 1-3, 2000 trajectories, 3 variants
    python benchmarks/rl_tabular_stall.py --budget 4000 --methods n_harpg
    python benchmarks/rl_tabular_stall.py --methods exact_ascent   # no sampling: exact ∇J_H, 1000 iterations

Same MDP and step size as benchmarks/rl_tabular.py (γ_t = 0.3 (2/(t+2))^{1/2}, one trajectory per sample).  Per
seed it prints the final gap (J* − J(θ_T))/|J*|, the exact ‖∇J_H(θ_T)‖ and min_s π_T(a*_s | s), the probability the
final policy gives the optimal action (argmax of Q*) in its worst state.  Variants: ``n_harpg`` (the algorithm),
``n_harpg_exact_hvp`` (the same, but its Hessian term ``v_t`` is the exact ``∇²J_H(θ̂_t)(θ_t − θ_{t−1})`` by autograd
through the linear-algebra objective; it still samples, and counts, the trajectory at ``θ̂_t`` so that the budget and
the random stream are N-HARPG's), ``n_pg_igt``; ``exact_ascent``: normalized ascent θ ← θ + γ_t ∇J_H/‖∇J_H‖ with
the exact gradient for budget/2 iterations (N-HARPG's iteration count), what the step schedule reaches without noise.

A run whose gap stays above 0.05 while ‖∇J_H‖ ≈ 0 and min_s π(a*|s) ≪ 1 has stalled at a near-deterministic
suboptimal softmax policy: there the Fisher information vanishes (the paper's Fisher-non-degeneracy assumption
fails), the gradient is smaller than the estimator's error, and more trajectories do not move it.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import Tensor

from descend.rl import NHARPG, NPGIGT, FlatPolicy, Power, TabularMDP, TabularSoftmaxPolicy
from descend.rl.algorithms import PolicyGradient

MDP = TabularMDP.random(5, 3, gamma=0.9, horizon=50, seed=0)


def exact_grad(theta: Tensor, hv: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """``∇J_H(θ)`` and, given ``hv``, ``∇²J_H(θ) hv`` (autograd through the exact objective)."""
    policy = TabularSoftmaxPolicy(MDP.n_states, MDP.n_actions)
    flat = FlatPolicy(policy)
    flat.set(theta)
    g = flat.grad(MDP.J(policy, horizon=MDP.horizon), create_graph=hv is not None)
    return g.detach(), (None if hv is None else flat.grad(g @ hv))


class NHARPGExactHVP(NHARPG):
    """N-HARPG whose Hessian-vector term is exact (the limit of infinitely many Hessian trajectories)."""

    name = "n_harpg_exact_hvp"

    def _hessian_vector(self, theta_hat: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        self._sample(theta_hat)                     # N-HARPG's budget and random stream
        v = exact_grad(theta_hat, delta)[1]
        assert v is not None
        return v


METHODS: dict[str, type[PolicyGradient]] = {"n_harpg": NHARPG, "n_harpg_exact_hvp": NHARPGExactHVP,
                                            "n_pg_igt": NPGIGT}


def optimal_actions() -> Tensor:
    V = torch.zeros(MDP.n_states, dtype=torch.float64)
    for _ in range(5000):
        V = (MDP.r + MDP.gamma * torch.einsum("sat,t->sa", MDP.P, V)).max(-1).values
    return (MDP.r + MDP.gamma * torch.einsum("sat,t->sa", MDP.P, V)).argmax(-1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--budget", type=int, default=2000)
    ap.add_argument("--methods", default=",".join(METHODS))
    a = ap.parse_args()
    known = [*METHODS, "exact_ascent"]
    if a.seeds < 1 or a.budget < 2:
        ap.error(f"--seeds must be ≥ 1 and --budget ≥ 2, got --seeds {a.seeds} --budget {a.budget}")
    unknown = [m for m in a.methods.split(",") if m not in known]
    if unknown:
        ap.error(f"--methods must be among {', '.join(known)}, got {', '.join(unknown)}")
    torch.set_num_threads(1)
    j_star, a_star = MDP.optimal_J(), optimal_actions()
    for m in a.methods.split(","):
        t0, gaps = time.time(), []
        if m == "exact_ascent":
            theta, lr = torch.zeros(MDP.n_states * MDP.n_actions, dtype=torch.float64), Power(0.3, 0.5)
            for t in range(a.budget // 2):
                g = exact_grad(theta)[0]
                theta = theta + lr(t) * g / g.norm()
            policy = TabularSoftmaxPolicy(MDP.n_states, MDP.n_actions)
            FlatPolicy(policy).set(theta)
            with torch.no_grad():
                gap = (j_star - float(MDP.J(policy))) / abs(j_star)
            print(f"exact_ascent       {a.budget // 2} iterations: gap {gap:.1e}  ({time.time() - t0:.0f}s)",
                  flush=True)
            continue
        for s in range(1, a.seeds + 1):
            policy = TabularSoftmaxPolicy(MDP.n_states, MDP.n_actions)
            alg = METHODS[m](policy, MDP, lr=Power(0.3, 0.5), seed=s)  # type: ignore[call-arg]
            alg.run(a.budget)
            with torch.no_grad():
                gap = (j_star - float(MDP.J(policy))) / abs(j_star)
                pi = MDP.policy_table(policy)
            grad_norm = float(exact_grad(alg.theta)[0].norm())
            worst = float(pi[torch.arange(MDP.n_states), a_star].min())
            gaps.append(gap)
            print(f"{m:18s} seed {s}: gap {gap:.3f}  |grad J_H| {grad_norm:.1e}  min_s pi(a*|s) {worst:.1e}",
                  flush=True)
        print(f"{m:18s} mean gap {sum(gaps) / len(gaps):.3f}, <= 0.05 on {sum(g <= 0.05 for g in gaps)}/{len(gaps)}"
              f"  ({time.time() - t0:.0f}s)", flush=True)


if __name__ == "__main__":
    main()
