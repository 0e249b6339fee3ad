"""Gymnasium environments through the standard API: episodes sampled in lockstep on a vector environment.

``GymSampler("CartPole-v1")`` works for any Gymnasium id (or a factory returning a ``gymnasium.Env``).  Episodes
are collected ``num_envs`` at a time on ``num_envs`` copies of the environment stepped in lockstep: the policy runs
once per step on the whole batch (the environments step one by one: Gymnasium's own vectorized CartPole costs
~2 ms per call here against ~30 µs per single-env step, so it is not used).

Counting (the same for every method, PPO included — see :mod:`descend.rl.study`): one *trajectory* is one episode
from ``reset`` to termination or truncation (CartPole-v1: 500 steps, Acrobot-v1: 500, Pendulum-v1: 200, the
environments' own ``TimeLimit``); *environment steps* are the steps of the episodes handed to the algorithm.
Finished copies stop stepping, so nothing is simulated that is not counted.  Reset seeds come from the caller's
``torch.Generator``, so a run is a function of its seed.  ``gymnasium`` is imported lazily (the ``rl`` extra).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from descend._validate import check_float, check_int

from .policies import GaussianPolicy, Policy, SoftmaxPolicy
from .trajectories import Trajectories

__all__ = ["GymSampler", "make_policy"]


class GymSampler:
    """Collect complete episodes of a Gymnasium environment (see the module docstring)."""

    def __init__(self, env: str | Callable[[], Any], *, gamma: float = 0.99, num_envs: int = 1,
                 env_kwargs: dict[str, Any] | None = None) -> None:
        import gymnasium as gym

        self.gamma = check_float("gamma", gamma, 0.0, 1.0)
        self.num_envs = check_int("num_envs", num_envs, 1)
        kwargs = dict(env_kwargs or {})
        self.env_id = env if isinstance(env, str) else getattr(env, "__name__", "custom")
        self._make: Callable[[], Any] = (lambda: gym.make(env, **kwargs)) if isinstance(env, str) else env
        self._envs: list[Any] = [self._make()]
        first = self._envs[0]
        self.observation_space = first.observation_space
        self.action_space = first.action_space
        spec = getattr(first, "spec", None)
        self.max_episode_steps = int(getattr(spec, "max_episode_steps", None) or 1000)

    def sample(self, policy: Policy, n: int, generator: torch.Generator) -> Trajectories:
        """``n`` complete episodes (``num_envs`` at a time), padded to the longest one."""
        check_int("n", n, 1)
        batches = []
        left = n
        while left > 0:
            b = min(left, self.num_envs)
            batches.append(self._batch(policy, b, generator))
            left -= b
        return _concat(batches, self.gamma)

    def _batch(self, policy: Policy, n: int, generator: torch.Generator) -> Trajectories:
        while len(self._envs) < n:
            self._envs.append(self._make())
        envs = self._envs[:n]
        seed = int(torch.randint(0, 2**31 - 1, (), generator=generator))
        obs = np.stack([np.asarray(e.reset(seed=seed + i)[0], dtype=np.float64) for i, e in enumerate(envs)])
        T = self.max_episode_steps
        obs_buf = np.zeros((n, T, *obs.shape[1:]), dtype=np.float64)
        rew_buf = np.zeros((n, T), dtype=np.float64)
        mask = np.zeros((n, T), dtype=bool)
        acts: list[torch.Tensor] = []
        alive = list(range(n))
        discrete = policy.discrete
        low = getattr(self.action_space, "low", None)
        high = getattr(self.action_space, "high", None)
        length = 0
        for t in range(T):
            obs_buf[alive, t] = obs[alive]
            mask[alive, t] = True
            a = policy.sample(torch.from_numpy(obs), generator)
            acts.append(a)
            a_np = a.numpy()
            still = []
            for i in alive:
                act = int(a_np[i]) if discrete else np.clip(a_np[i], low, high).astype(self.action_space.dtype)
                o, r, term, trunc, _ = envs[i].step(act)
                rew_buf[i, t] = float(r)
                obs[i] = o
                if not (term or trunc):
                    still.append(i)
            alive = still
            length = t + 1
            if not alive:
                break
        actions = torch.stack(acts, 1)
        return Trajectories(torch.from_numpy(obs_buf[:, :length]), actions, torch.from_numpy(rew_buf[:, :length]),
                            torch.from_numpy(mask[:, :length]), self.gamma)

    def close(self) -> None:
        for env in self._envs:
            env.close()
        self._envs.clear()


def _concat(batches: list[Trajectories], gamma: float) -> Trajectories:
    if len(batches) == 1:
        return batches[0]
    H = max(int(b.mask.shape[1]) for b in batches)

    def pad(x: torch.Tensor) -> torch.Tensor:
        extra = H - int(x.shape[1])
        if extra == 0:
            return x
        shape = (x.shape[0], extra, *x.shape[2:])
        return torch.cat([x, torch.zeros(shape, dtype=x.dtype)], 1)

    return Trajectories(torch.cat([pad(b.obs) for b in batches]), torch.cat([pad(b.actions) for b in batches]),
                        torch.cat([pad(b.rewards) for b in batches]), torch.cat([pad(b.mask) for b in batches]),
                        gamma)


def make_policy(sampler: GymSampler, hidden: tuple[int, ...] = (), log_std: float = 0.0) -> Policy:
    """The default policy for the sampler's spaces: softmax for ``Discrete``, Gaussian for ``Box`` actions."""
    import gymnasium as gym

    obs_space, act_space = sampler.observation_space, sampler.action_space
    if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) != 1:
        raise ValueError(f"observations must be a flat Box, got {obs_space}")
    obs_dim = int(obs_space.shape[0])
    if isinstance(act_space, gym.spaces.Discrete):
        return SoftmaxPolicy.mlp(obs_dim, int(act_space.n), hidden).double()
    if isinstance(act_space, gym.spaces.Box) and len(act_space.shape) == 1:
        return GaussianPolicy.mlp(obs_dim, int(act_space.shape[0]), hidden, log_std).double()
    raise ValueError(f"actions must be Discrete or a flat Box, got {act_space}")
