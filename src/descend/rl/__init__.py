"""descend.rl: variance-reduced policy gradients on exact tabular MDPs and Gymnasium environments.

* policies (:mod:`.policies`): softmax (discrete) and Gaussian (continuous) policies as torch modules;
* estimators (:mod:`.estimators`): REINFORCE, GPOMDP and HARPG's Hessian-vector term (one HVP, no Hessian);
* discounted algorithms (:mod:`.algorithms`): REINFORCE, GPOMDP, normalized PG, N-PG-IGT, HARPG, N-HARPG
  (Fatkhullin, Barakat, Kireeva, He, ICML 2023);
* average reward (:mod:`.average_reward`): the epoch-based advantage estimator with IGT and Hessian-based variance
  reduction (Ganesh, Mondal, Aggarwal 2024);
* environments: exact tabular MDPs (:mod:`.tabular`, the ground truth) and any Gymnasium environment (:mod:`.gym`);
* studies (:mod:`.study`): learning curves over seeds into ``descend.results``, PPO (stable-baselines3) as reference.

    from descend.rl import TabularMDP, TabularSoftmaxPolicy, NPGIGT
    mdp = TabularMDP.random(5, 3, seed=0)
    policy = TabularSoftmaxPolicy(5, 3)
    NPGIGT(policy, mdp, seed=0).run(trajectories=2000)
    float(mdp.J(policy)), mdp.optimal_J()
"""

from __future__ import annotations

from .algorithms import GPOMDP, HARPG, NHARPG, NPGIGT, REINFORCE, NormalizedPG, PolicyGradient, StepInfo
from .average_reward import AverageRewardHessianPG, AverageRewardIGT, AverageRewardPG, epoch_advantages
from .estimators import FlatPolicy, gpomdp, harpg_hvp, reinforce
from .policies import GaussianPolicy, Policy, SoftmaxPolicy, TabularSoftmaxPolicy, mlp
from .schedules import Constant, Power, Schedule
from .tabular import ContinuingSampler, TabularMDP
from .trajectories import Sampler, Trajectories

__all__ = [
    "GPOMDP", "HARPG", "NHARPG", "NPGIGT", "REINFORCE", "AverageRewardHessianPG", "AverageRewardIGT",
    "AverageRewardPG", "Constant", "ContinuingSampler", "FlatPolicy", "GaussianPolicy", "NormalizedPG", "Policy",
    "PolicyGradient", "Power", "Sampler", "Schedule", "SoftmaxPolicy", "StepInfo", "TabularMDP",
    "TabularSoftmaxPolicy", "Trajectories", "epoch_advantages", "gpomdp", "harpg_hvp", "mlp", "reinforce",
]
