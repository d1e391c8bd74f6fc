"""Agent evaluation with stable-baselines3: episode return after a fixed environment-step budget.

Three agents of the same algorithm and budget, differing only in what they observe:

* ``pretrained`` — the frozen pretrained encoder's embedding of the frame stack (an observation
  wrapper; the policy is an MLP on 50 features, the encoder never changes);
* ``pixels`` — the raw frame stack, through the same encoder architecture trained from scratch by
  the RL loss (sb3 ``features_extractor_class``) — "pixels from scratch";
* ``state`` — the true physical state (the upper bound).

Options (``evaluate.domain.agent`` in a recipe): ``algo`` (PPO | DQN | SAC), ``steps`` (the budget,
in environment steps after action repeat), ``inputs``, ``seeds``, ``eval_episodes``, ``algo_kwargs``.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from domains.rl.encoders import PixelEncoder
from domains.rl.envs import PixelEnv


class StackedPixelEnv(gym.Env):
    """A ``PixelEnv`` as a gymnasium env observing the frame stack (uint8) or the true state."""

    metadata = {"render_modes": []}

    def __init__(
        self, name: str, size: int, stack: int, observe: str, action_repeat: int | None = None
    ) -> None:
        self.penv = PixelEnv(name, size, action_repeat)
        self.stack, self.observe = stack, observe
        frame, state = self.penv.reset(0)
        if self.penv.spec.backend == "gymnasium":
            self.action_space = self.penv.action_space
        else:
            spec = self.penv.action_space
            self.action_space = gym.spaces.Box(spec.minimum, spec.maximum, dtype=np.float32)
        if observe == "state":
            self.observation_space = gym.spaces.Box(-np.inf, np.inf, state.shape, np.float32)
        else:
            shape = (stack * frame.shape[0], *frame.shape[1:])
            self.observation_space = gym.spaces.Box(0, 255, shape, np.uint8)
        self.frames: deque[np.ndarray] = deque(maxlen=stack)

    def _obs(self, frame: np.ndarray, state: np.ndarray) -> np.ndarray:
        self.frames.append(frame)
        if self.observe == "state":
            return state.astype(np.float32)
        return np.concatenate(list(self.frames))

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        frame, state = self.penv.reset(int(self.np_random.integers(2**31)))
        self.frames.clear()
        self.frames.extend([frame] * (self.stack - 1))
        return self._obs(frame, state), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:  # noqa: ANN401
        a = np.atleast_1d(np.asarray(action, dtype=np.float64))
        frame, state, reward, terminated, truncated = self.penv.step(a)
        return self._obs(frame, state), reward, terminated, truncated, {}

    def close(self) -> None:
        self.penv.close()


class FrozenEncoderObs(gym.ObservationWrapper):
    """Observation = the frozen encoder's embedding of the frame stack (float32 ``[D]``)."""

    def __init__(self, env: gym.Env, encoder: nn.Module) -> None:
        super().__init__(env)
        self.encoder = encoder.eval()
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        d = encoder.embedding_dim
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (d,), np.float32)

    @torch.no_grad()
    def observation(self, obs: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(obs[None].astype(np.float32) / 255.0)
        return self.encoder(x)[0].numpy()


def _extractor_class() -> type:
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

    class PixelCNNExtractor(BaseFeaturesExtractor):
        """CURL's encoder as sb3's features extractor, trained from scratch by the RL loss."""

        def __init__(self, observation_space: gym.spaces.Box, **encoder_cfg: Any) -> None:  # noqa: ANN401
            super().__init__(observation_space, encoder_cfg.get("feature_dim", 50))
            self.encoder = PixelEncoder(**encoder_cfg)

        def forward(self, obs: torch.Tensor) -> torch.Tensor:
            return self.encoder(obs)  # sb3 already scaled uint8 images to [0, 1]

    return PixelCNNExtractor


def train_and_score(
    make_env: Any,  # noqa: ANN401
    observe: str,
    algo: str,
    steps: int,
    seed: int,
    eval_episodes: int,
    enc_cfg: dict[str, Any],
    algo_kwargs: dict[str, Any] | None = None,
) -> dict[str, float]:
    import stable_baselines3 as sb3
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.logger import Logger

    cls = getattr(sb3, algo)
    kwargs: dict[str, Any] = {"seed": seed, "verbose": 0, "device": "cpu", **(algo_kwargs or {})}
    policy = "MlpPolicy"
    if observe == "pixels":
        policy = "CnnPolicy"
        kwargs["policy_kwargs"] = {
            "features_extractor_class": _extractor_class(),
            "features_extractor_kwargs": enc_cfg,
        }
    env = make_env()
    t0 = time.perf_counter()
    model = cls(policy, env, **kwargs)
    # a logger with no outputs: sb3's default (verbose 0, no tensorboard) still makes an empty
    # $TMPDIR/SB3-<date> folder per learn() call, which is litter on a shared machine
    model.set_logger(Logger(folder=None, output_formats=[]))
    model.learn(total_timesteps=steps)
    train_s = time.perf_counter() - t0
    from stable_baselines3.common.monitor import Monitor

    eval_env = Monitor(make_env())  # sb3 reads the episodes' true returns and lengths from Monitor
    eval_env.reset(seed=10_000 + seed)
    mean, std = evaluate_policy(model, eval_env, n_eval_episodes=eval_episodes, deterministic=True)
    env.close()
    eval_env.close()
    return {
        "return_mean": round(float(mean), 2),
        "return_std": round(float(std), 2),
        "train_s": round(train_s, 1),
    }


def agent_eval(ctx: Any, enc_cfg: dict[str, Any], opts: dict[str, Any]) -> tuple[dict[str, Any], str]:  # noqa: ANN401
    data = ctx.recipe["data"]["options"]
    name, size, stack = data.get("env", "CartPole-v1"), data.get("size", 64), data.get("stack", 3)
    algo, steps = opts.get("algo", "PPO"), int(opts.get("steps", 50_000))
    inputs = opts.get("inputs", ["pretrained", "pixels", "state"])
    seeds = opts.get("seeds", [0])
    episodes = int(opts.get("eval_episodes", 10))
    encoder = ctx.encoders["pretrained"]

    def factory(observe: str) -> Any:  # noqa: ANN401
        def make() -> gym.Env:
            env = StackedPixelEnv(
                name, size, stack, "state" if observe == "state" else "pixels", data.get("action_repeat")
            )
            return FrozenEncoderObs(env, encoder) if observe == "pretrained" else env

        return make

    results: dict[str, Any] = {"algo": algo, "env_steps": steps, "env": name}
    rows = []
    for observe in inputs:
        runs = [
            train_and_score(
                factory(observe), observe, algo, steps, s, episodes, enc_cfg, opts.get("algo_kwargs")
            )
            for s in seeds
        ]
        means = [r["return_mean"] for r in runs]
        results[observe] = {"runs": runs, "return_mean": round(float(np.mean(means)), 2)}
        rows.append(
            f"| {observe} | {np.mean(means):.1f} ± {np.std(means):.1f} | {len(seeds)} | {sum(r['train_s'] for r in runs):.0f} |"
        )
        print(f"evaluate: agent {observe}: return {np.mean(means):.1f} after {steps} steps", flush=True)
    text = "\n".join(
        [
            f"## Agent ({algo}, {steps} environment steps on {name}; mean return over {episodes} episodes)\n",
            "| observes | return (mean ± sd over seeds) | seeds | train s |",
            "|---|---|---|---|",
            *rows,
        ]
    )
    return results, text
