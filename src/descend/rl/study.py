"""Learning-curve studies: methods × environments × seeds into ``descend.results`` (family ``"rl"``), and a report.

A run is (environment, method, seed, trajectory budget).  Its curve has one point per window of ``eval_every``
trajectories: ``trajectories`` (sampled so far), ``env_steps`` (so far) and ``return`` (mean undiscounted return
of the episodes sampled in that window — the on-policy training return, as stable-baselines3's ``ep_rew_mean``;
for N-PG-IGT these episodes run at the extrapolated point ``θ̃``, for (N-)HARPG half of them at ``θ̂``).

Counting is the same for every method: a trajectory is one complete episode (reset → termination or the
environment's time limit); environment steps are those episodes' steps.  PPO (stable-baselines3, the external
reference) runs on one environment copy and stops once it has *completed* ``budget`` episodes; its steps count
the same way (its last, unfinished rollout steps are counted too, since PPO trained on them).

Environments: ``tabular`` (the random 5-state, 3-action MDP of the tests, H=50, γ=0.9; ``return`` is then the
exact discounted J of the current policy, not a sample) or any Gymnasium id.

Average reward (``avg_igt``, ``avg_hessian``; Ganesh, Mondal, Aggarwal 2024) runs on ``tabular-average``, the
random ergodic 5-state, 2-action MDP of ``tests/rl/test_average_reward.py``: one continuing trajectory split into
epochs of ``epoch_length`` steps, so there a "trajectory" of the curve is one *epoch* (``budget`` epochs per run),
``return`` is the exact average reward ρ(θ) of the current policy and ``regret`` the cumulative regret
``Σ_epochs H (ρ* − ρ(θ_epoch))``; the summary adds the regret's log–log slope over ``env_steps ≥ 10³``.  Their
step size is ``γ_k = lr · 2/(k+2)`` (``lr``, default 1: ``descend rl run --lr``), stored in the run's setting when
not 1.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from descend._validate import check_float, check_int

from .algorithms import GPOMDP, HARPG, NHARPG, NPGIGT, REINFORCE, NormalizedPG, PolicyGradient, StepInfo
from .average_reward import AverageRewardHessianPG, AverageRewardIGT, AverageRewardPG
from .policies import Policy, TabularSoftmaxPolicy
from .schedules import Constant, Power, Schedule
from .tabular import TabularMDP

__all__ = ["AVERAGE_ENV", "AVERAGE_METHODS", "ENVS", "METHODS", "EnvSetting", "run_average_curve", "run_curve",
           "run_ppo", "summarize"]

FAMILY = "rl"
#: average-reward methods (environment :data:`AVERAGE_ENV` only)
AVERAGE_METHODS = ("avg_igt", "avg_hessian")
METHODS = ("reinforce", "gpomdp", "normalized_pg", "n_pg_igt", "harpg", "n_harpg", "ppo", *AVERAGE_METHODS)
#: the average-reward environment: the ergodic tabular MDP of the average-reward tests
AVERAGE_ENV = "tabular-average"
#: defaults of the average-reward methods' epoch length ``H`` and advantage window ``N`` (the tests' values)
EPOCH_LENGTH, WINDOW = 200, 10
#: default step-size scale ``γ_0`` of the average-reward methods' ``γ_k = γ_0 · 2/(k+2)`` (their class default)
AVERAGE_LR = 1.0


@dataclass(frozen=True)
class EnvSetting:
    """Per-environment defaults: discount, policy body, step sizes (normalized methods / plain SGA), batch."""

    gamma: float
    hidden: tuple[int, ...] = ()
    lr_normalized: Schedule = field(default_factory=lambda: Power(1.0, 1.0))
    lr_sga: Schedule = field(default_factory=lambda: Constant(0.01))
    momentum_igt: Schedule = field(default_factory=lambda: Power(1.0, 0.8))
    momentum_harpg: Schedule = field(default_factory=lambda: Power(1.0, 1.0))
    batch_size: int = 1
    baseline: bool = False
    solved: float | None = None
    hessian_batch_size: int | None = None   # (N-)HARPG's Hessian batch; None: batch_size

    def describe(self, method: str = "") -> dict[str, Any]:
        """The setting as stored with a run of ``method`` (the Hessian batch only for (N-)HARPG, and only when it
        is set, so that runs stored before the option existed still match)."""
        out = {"gamma": self.gamma, "hidden": list(self.hidden), "lr_normalized": repr(self.lr_normalized),
               "lr_sga": repr(self.lr_sga), "momentum_igt": repr(self.momentum_igt),
               "momentum_harpg": repr(self.momentum_harpg), "batch_size": self.batch_size,
               "baseline": self.baseline}
        if self.hessian_batch_size is not None and method in (HARPG.name, NHARPG.name):
            out["hessian_batch_size"] = self.hessian_batch_size
        return out


#: Defaults per environment (others: CartPole's).
#:
#: CartPole-v1, from the authors' released code (Fatkhullin et al.'s garage-based ``run_PG.py``): a softmax policy
#: on an MLP with hidden sizes (32, 32) and tanh, γ = 0.99, a baseline (theirs: garage's ``LinearFeatureBaseline``
#: fitted per batch; ours: GPOMDP's leave-one-out baseline, unbiased, the one descend has).  Not taken from them:
#: their batch is 1000–5000 environment steps per iteration (ours: 5 trajectories, counted the same way for every
#: method), their CartPole episodes are cut at 200 steps (ours: CartPole-v1's own 500, so "solved" means ≥ 475),
#: their Hessian term uses a separate batch of ≥ 32 steps (ours: a separate batch of 2 trajectories, the fewest
#: the baseline allows; chosen on seeds 100–101 over the gradient's 5, 3000 trajectories: solved after 1600 and
#: 1940 trajectories against 1900 and never), and their step sizes
#: decay (γ_t = γ_0·2/(t+2), η_t = (2/(t+2))^{4/5} or 2/(t+2), γ_0 = 0.1): with γ_0 = 1 and these batches
#: N-PG-IGT reached a return of only 130 after 800 trajectories, so the steps here are constants, picked by a
#: search on seeds 100 and 101 (distinct from the evaluation seeds 0–2; 800–1000 trajectories; every value on
#: seed 100, the close ones on 101 too), by final return: N-PG-IGT γ ∈ {0.02, 0.05, 0.1} (η = 0.1); N-HARPG
#: (γ, η) ∈ {(0.02, 0.1), (0.05, 0.1), (0.1, 0.1), (0.05, 0.3), (0.05, 0.5), (0.1, 0.5)}; GPOMDP's plain step
#: ∈ {0.0005, 0.002, 0.005}.  Without a baseline the (32, 32) policy collapsed to a return of ≈ 9 (N-PG-IGT,
#: γ = 0.05, one trajectory per iteration).  Acrobot and Pendulum: short runs, not the papers'.
ENVS: dict[str, EnvSetting] = {
    "tabular": EnvSetting(gamma=0.9, lr_normalized=Power(0.3, 0.5)),
    "CartPole-v1": EnvSetting(gamma=0.99, hidden=(32, 32), lr_normalized=Constant(0.05), lr_sga=Constant(0.002),
                              momentum_igt=Constant(0.1), momentum_harpg=Constant(0.5), batch_size=5,
                              hessian_batch_size=2, baseline=True, solved=475.0),
    "Acrobot-v1": EnvSetting(gamma=0.99, lr_normalized=Constant(0.05), lr_sga=Constant(0.002),
                             momentum_igt=Constant(0.1), momentum_harpg=Constant(0.1), solved=-100.0),
    "Pendulum-v1": EnvSetting(gamma=0.99, lr_normalized=Constant(0.02), lr_sga=Constant(1e-4),
                              momentum_igt=Constant(0.1), momentum_harpg=Constant(0.1)),
}


def env_setting(env: str) -> EnvSetting:
    return ENVS.get(env, ENVS["CartPole-v1"])


def make_env(env: str, seed: int = 0) -> tuple[Any, Policy]:
    """The sampler and a fresh policy for ``env`` (``tabular`` or a Gymnasium id)."""
    if env == "tabular":
        mdp = TabularMDP.random(5, 3, gamma=0.9, horizon=50, seed=0)
        return mdp, TabularSoftmaxPolicy(5, 3)
    from .gym import GymSampler, make_policy

    s = env_setting(env)
    sampler = GymSampler(env, gamma=s.gamma, num_envs=max(1, s.batch_size))
    torch.manual_seed(seed)   # hidden layers' initialization (the output layer starts at zero)
    return sampler, make_policy(sampler, s.hidden)


def make_average_method(method: str, epoch_length: int = EPOCH_LENGTH, window: int = WINDOW,
                        seed: int = 0, lr: float = AVERAGE_LR) -> AverageRewardPG:
    """``avg_igt`` / ``avg_hessian`` on :data:`AVERAGE_ENV`'s MDP: the class defaults, with the step size
    ``γ_k = lr · 2/(k+2)`` (``lr`` scales the default schedule; ``lr = 1`` is the default itself)."""
    check_float("lr", lr, 0.0, low_open=True)
    mdp = TabularMDP.random(5, 2, gamma=1.0, horizon=1, seed=0)
    cls = {"avg_igt": AverageRewardIGT, "avg_hessian": AverageRewardHessianPG}.get(method)
    if cls is None:
        raise ValueError(f"average-reward method must be one of {AVERAGE_METHODS}, got {method!r}")
    return cls(TabularSoftmaxPolicy(5, 2), mdp, epoch_length=epoch_length, window=window, lr=Power(lr, 1.0),
               seed=seed)


def run_average_curve(method: str, seed: int, budget: int, eval_every: int | None = None,
                      epoch_length: int = EPOCH_LENGTH, window: int = WINDOW,
                      progress: Callable[[int], None] | None = None,
                      lr: float = AVERAGE_LR) -> dict[str, list[float]]:
    """One average-reward curve over ``budget`` epochs: a point every ``eval_every`` epochs (see the docstring)."""
    check_int("budget", budget, 1)
    every = eval_every or max(1, budget // 50)
    check_int("eval_every", every, 1, budget)
    alg = make_average_method(method, epoch_length, window, seed, lr)
    curve: dict[str, list[float]] = {"trajectories": [], "env_steps": [], "return": [], "regret": []}
    next_point = every
    while alg.steps < budget * alg.H:
        alg.step()
        while alg.steps >= next_point * alg.H and next_point <= budget:
            with torch.no_grad():
                rho = float(alg.mdp.average_reward(alg.policy))
            curve["trajectories"].append(float(next_point))
            curve["env_steps"].append(float(alg.steps))
            curve["return"].append(rho)
            curve["regret"].append(alg.regret)
            next_point += every
            if progress is not None:
                progress(alg.steps // alg.H)
    return curve


def regret_slope(curve: dict[str, list[float]], from_steps: float = 1e3) -> float | None:
    """Least-squares slope of log regret vs log env steps over the points with ``env_steps ≥ from_steps``
    (``None`` with fewer than 2 such points or a non-positive regret)."""
    pts = [(x, y) for x, y in zip(curve["env_steps"], curve.get("regret", []), strict=False) if x >= from_steps]
    if len(pts) < 2 or any(y <= 0 for _, y in pts):
        return None
    lx = [math.log(x) for x, _ in pts]
    ly = [math.log(y) for _, y in pts]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    sxx = sum((a - mx) ** 2 for a in lx)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True)) / sxx if sxx > 0 else None


def make_method(method: str, policy: Policy, sampler: Any, s: EnvSetting, seed: int) -> PolicyGradient:
    kw: dict[str, Any] = {"batch_size": s.batch_size, "seed": seed}
    if method == "reinforce":
        return REINFORCE(policy, sampler, lr=s.lr_sga, **kw)
    kw["baseline"] = s.baseline
    if method == "gpomdp":
        return GPOMDP(policy, sampler, lr=s.lr_sga, **kw)
    if method == "normalized_pg":
        return NormalizedPG(policy, sampler, lr=s.lr_normalized, **kw)
    if method == "n_pg_igt":
        return NPGIGT(policy, sampler, lr=s.lr_normalized, momentum=s.momentum_igt, **kw)
    if method == "harpg":
        return HARPG(policy, sampler, lr=s.lr_sga, momentum=s.momentum_harpg,
                     hessian_batch_size=s.hessian_batch_size, **kw)
    if method == "n_harpg":
        return NHARPG(policy, sampler, lr=s.lr_normalized, momentum=s.momentum_harpg,
                      hessian_batch_size=s.hessian_batch_size, **kw)
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def run_curve(env: str, method: str, seed: int, budget: int, eval_every: int | None = None,
              progress: Callable[[int], None] | None = None) -> dict[str, list[float]]:
    """One learning curve (see the module docstring); ``progress(trajectories)`` after each window."""
    check_int("budget", budget, 1)
    check_int("seed", seed, 0)
    every = eval_every or max(1, budget // 50)
    check_int("eval_every", every, 1, budget)
    if method == "ppo":
        return run_ppo(env, seed, budget, every, progress)
    if (method in AVERAGE_METHODS) != (env == AVERAGE_ENV):
        raise ValueError(f"methods {', '.join(AVERAGE_METHODS)} run on env={AVERAGE_ENV!r} only, and only they do")
    if env == AVERAGE_ENV:
        return run_average_curve(method, seed, budget, every, progress=progress)
    s = env_setting(env)
    sampler, policy = make_env(env, seed)
    alg = make_method(method, policy, sampler, s, seed)
    curve: dict[str, list[float]] = {"trajectories": [], "env_steps": [], "return": []}
    window: list[float] = []
    next_point = every

    def record(a: PolicyGradient, info: StepInfo) -> None:
        nonlocal next_point
        window.extend(info.returns)
        while a.trajectories >= next_point:
            if isinstance(sampler, TabularMDP) and isinstance(policy, TabularSoftmaxPolicy):
                with torch.no_grad():
                    value = float(sampler.J(policy))
            else:
                value = sum(window) / max(1, len(window))
            curve["trajectories"].append(float(next_point))
            curve["env_steps"].append(float(a.env_steps))
            curve["return"].append(value)
            window.clear()
            next_point += every
            if progress is not None:
                progress(a.trajectories)

    alg.run(budget, record)
    return curve


def run_ppo(env: str, seed: int, budget: int, eval_every: int,
            progress: Callable[[int], None] | None = None) -> dict[str, list[float]]:
    """stable-baselines3 PPO (its defaults, one environment copy) until ``budget`` episodes have completed."""
    if env == "tabular":
        raise ValueError("ppo runs on Gymnasium environments, not on env='tabular'")
    import gymnasium as gym
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.monitor import Monitor

    curve: dict[str, list[float]] = {"trajectories": [], "env_steps": [], "return": []}

    class Count(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.episodes, self.window = 0, []  # type: ignore[var-annotated]

        def _on_step(self) -> bool:
            for info in self.locals.get("infos", []):
                if "episode" in info:
                    self.episodes += 1
                    self.window.append(float(info["episode"]["r"]))
                    if self.episodes % eval_every == 0:
                        curve["trajectories"].append(float(self.episodes))
                        curve["env_steps"].append(float(self.num_timesteps))
                        curve["return"].append(sum(self.window) / len(self.window))
                        self.window = []
                        if progress is not None:
                            progress(self.episodes)
            return self.episodes < budget

    e = Monitor(gym.make(env))
    model = PPO("MlpPolicy", e, seed=seed, device="cpu", verbose=0)
    max_steps = budget * int(getattr(e.spec, "max_episode_steps", None) or 1000) + model.n_steps
    model.learn(total_timesteps=max_steps, callback=Count())
    e.close()
    return curve


def summarize(curve: dict[str, list[float]], solved: float | None, last: int = 10) -> dict[str, Any]:
    """Final return (mean of the last ``last`` points) and, if ``solved`` is given, the first trajectory count
    at which the mean of ``last`` consecutive points reaches it (``None``: never)."""
    r = curve["return"]
    out: dict[str, Any] = {"final_return": sum(r[-last:]) / max(1, len(r[-last:])) if r else math.nan,
                           "trajectories": curve["trajectories"][-1] if r else 0.0,
                           "env_steps": curve["env_steps"][-1] if r else 0.0}
    if solved is not None:
        out["solved_at"] = None
        for i in range(last - 1, len(r)):
            if sum(r[i - last + 1:i + 1]) / last >= solved:
                out["solved_at"] = curve["trajectories"][i]
                break
        out["solved"] = out["final_return"] >= solved
    return out


def run_study(store: Any, env: str, methods: Sequence[str], seeds: Sequence[int], budget: int,
              eval_every: int | None = None, log: Callable[[str], None] = print,
              epoch_length: int = EPOCH_LENGTH, window: int = WINDOW, lr: float = AVERAGE_LR) -> int:
    """Run every missing (method, seed) and add it to ``store``; returns how many runs were added.

    ``epoch_length``, ``window`` and the step-size scale ``lr`` apply to the average-reward methods (on
    :data:`AVERAGE_ENV`) only."""
    from descend.results import Record

    average = env == AVERAGE_ENV
    if any((m in AVERAGE_METHODS) != average for m in methods):
        raise ValueError(f"methods {', '.join(AVERAGE_METHODS)} run on env={AVERAGE_ENV!r} only, and only they do")
    s = env_setting(env)
    every = eval_every or max(1, budget // 50)
    added = 0
    for method in methods:
        # ``lr`` is stored only when it is not the default: runs stored before the option existed still match
        step = {} if lr == AVERAGE_LR else {"lr": lr}
        defaults: dict[str, Any] = ({"epoch_length": epoch_length, "window": window, **step} if average
                                    else s.describe(method) if method != "ppo"
                                    else {"ppo": "stable-baselines3 defaults"})
        setting = {"budget": budget, "eval_every": every, "defaults": defaults}
        for seed in seeds:
            if store.has(FAMILY, env, method, seed, setting):
                log(f"{env} {method} seed {seed}: stored, skipped")
                continue
            t0 = time.time()
            if average:
                curve = run_average_curve(method, seed, budget, every, epoch_length, window, lr=lr)
                summary = summarize(curve, None)
                summary["regret"] = curve["regret"][-1] if curve["regret"] else math.nan
                summary["regret_slope"] = regret_slope(curve)
            else:
                curve = run_curve(env, method, seed, budget, every)
                summary = summarize(curve, s.solved if env != "tabular" else None)
            summary["seconds"] = round(time.time() - t0, 2)
            store.add(Record(FAMILY, env, method, seed, setting, curve, summary))
            added += 1
            log(f"{env} {method} seed {seed}: final return {summary['final_return']:.2f} "
                f"({summary['seconds']:.0f}s)")
    return added


def _run_groups(recs: Sequence[Any], study: str) -> list[tuple[str, list[Any]]]:
    """``(label, records)`` per method *and setting* of ``study``: runs of another budget, evaluation interval or
    other defaults are not pooled.  The label is the method, plus what tells its settings apart (budget, then
    ``every``, then a setting digest) where a method has runs of several settings."""
    groups: dict[tuple[str, str], list[Any]] = {}
    for r in recs:
        if r.study == study:
            groups.setdefault((r.method, r.setting_key), []).append(r)
    by_method: dict[str, list[dict[str, Any]]] = {}
    for (method, _), rs in groups.items():
        by_method.setdefault(method, []).append(rs[0].setting)

    def order(kv: tuple[tuple[str, str], list[Any]]) -> tuple[Any, ...]:
        st = kv[1][0].setting
        return (kv[0][0], *(_sort_number(st.get(f)) for f in ("budget", "eval_every")), kv[0][1])

    out = []
    for (method, key), rs in sorted(groups.items(), key=order):
        label, settings, st = method, by_method[method], rs[0].setting
        if len(settings) > 1:
            parts = [f"{name} {st.get(field)}" for field, name in (("budget", "budget"), ("eval_every", "every"))
                     if len({str(x.get(field)) for x in settings}) > 1]
            if sum(all(x.get(f) == st.get(f) for f in ("budget", "eval_every")) for x in settings) > 1:
                parts.append(f"setting {key[:6]}")   # same budget and interval, other defaults
            label = f"{method} ({', '.join(parts)})"
        out.append((label, rs))
    return out


def _sort_number(value: Any) -> tuple[int, float, str]:
    """A sort key that puts numbers in numeric order and anything else (None, a string) after them."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, str(value))


def report_rows(store: Any, env: str | None = None) -> list[dict[str, Any]]:
    """One row per (environment, method, setting): the method, its budget and evaluation interval, seeds, median
    final return, solved seeds, median trajectories to solve (``setting`` tells apart a method's runs of several
    settings; empty where it has one)."""
    rows = []
    recs = store.records(FAMILY)
    for study in sorted({r.study for r in recs} if env is None else {env}):
        for label, rs in _run_groups(recs, study):
            finals = sorted(float(r.summary.get("final_return", math.nan)) for r in rs)
            row: dict[str, Any] = {"env": study, "method": rs[0].method,
                                   "setting": "" if label == rs[0].method else label,
                                   "budget": rs[0].setting.get("budget"), "every": rs[0].setting.get("eval_every"),
                                   "seeds": len(rs), "final return (median)": _quantile(finals, 0.5),
                                   "20%": _quantile(finals, 0.2), "80%": _quantile(finals, 0.8)}
            slopes = sorted(float(r.summary["regret_slope"]) for r in rs if r.summary.get("regret_slope") is not None)
            if slopes:
                row["regret slope (median)"] = _quantile(slopes, 0.5)
            if any("solved_at" in r.summary for r in rs):
                solved = [float(r.summary["solved_at"]) for r in rs if r.summary.get("solved_at") is not None]
                row["solved seeds"] = f"{sum(bool(r.summary.get('solved')) for r in rs)}/{len(rs)}"
                row["trajectories to solve (median)"] = _quantile(sorted(solved), 0.5) if solved else None
            rows.append(row)
    return rows


def _quantile(xs: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile of sorted ``xs`` (nan when empty)."""
    if not xs:
        return math.nan
    pos = q * (len(xs) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def band(curves: Sequence[dict[str, list[float]]], x: str = "trajectories") -> tuple[list[float], list[float],
                                                                                     list[float], list[float]]:
    """Median and 20–80 % band over seeds, on the points every curve has (the shortest curve's x)."""
    n = min(len(c[x]) for c in curves)
    xs = list(curves[0][x][:n]) if x == "trajectories" else \
        [_quantile(sorted(c[x][i] for c in curves), 0.5) for i in range(n)]
    med, lo, hi = [], [], []
    for i in range(n):
        v = sorted(c["return"][i] for c in curves)
        med.append(_quantile(v, 0.5))
        lo.append(_quantile(v, 0.2))
        hi.append(_quantile(v, 0.8))
    return xs, med, lo, hi


def write_report(store: Any, path: Any) -> Any:
    """HTML page: per environment, median return vs trajectories with 20–80 % bands, and the table."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from descend.results.html import colors, figure_html, table_html, write_page

    recs = store.records(FAMILY)
    if not recs:
        raise ValueError(f"no {FAMILY!r} results in {store.url}; run `descend rl run` first")
    body = []
    for study in sorted({r.study for r in recs}):
        groups = _run_groups(recs, study)
        col = colors([label for label, _ in groups])
        fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
        for label, rs in groups:
            curves = [dict(r.curve) for r in rs if r.curve.get("return")]
            if not curves:
                continue
            for ax, x in zip(axes, ("trajectories", "env_steps"), strict=True):
                xs, med, lo, hi = band(curves, x)
                ax.plot(xs, med, color=col[label], label=f"{label} ({len(curves)} seeds)")
                ax.fill_between(xs, lo, hi, color=col[label], alpha=0.2)
        axes[0].set_xlabel("trajectories sampled")
        axes[1].set_xlabel("environment steps (median over seeds)")
        axes[0].set_ylabel({"tabular": "exact J(θ)", AVERAGE_ENV: "exact average reward ρ(θ)"}.get(
            study, "return (mean over each window)"))
        axes[0].legend(fontsize=8)
        fig.suptitle(f"{study}: median and 20–80 % band over seeds")
        fig.tight_layout()
        body.append(f"<h2>{study}</h2>" + figure_html(fig))
        plt.close(fig)
        rows = [{k: ("" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)) for k, v in row.items()}
                for row in report_rows(store, study)]
        body.append(table_html(rows))
    return write_page("descend rl: learning curves", "\n".join(body), path)
