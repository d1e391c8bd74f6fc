"""Environments rendered to pixels: gymnasium classic control and MuJoCo, and the DeepMind Control Suite.

``PixelEnv`` hides the three APIs behind one small interface: ``reset(seed)`` and ``step(action)``
return a rendered frame (uint8 ``[C, H, W]``, grayscale or RGB, cropped and resized) together with
the true physical state (float64 ``[d]``) that the state probe regresses and the state agent sees.

True state: classic control's observation *is* the state (CartPole ``x, ẋ, θ, θ̇``; Pendulum
``cos θ, sin θ, θ̇``); gymnasium MuJoCo uses ``qpos ⊕ qvel`` (the observation drops e.g. the
cheetah's x position); dm_control uses the task's flattened observation (what "state SAC" sees).
MuJoCo renders headless through EGL (``MUJOCO_GL=egl``, set here when unset).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class EnvSpec:
    backend: str  # "gymnasium" | "dm_control"
    id: str
    #: (top, bottom) fractions of the rendered frame kept before resizing (CartPole's scene is a band)
    crop: tuple[float, float] = (0.0, 1.0)
    #: (left, right) fractions kept horizontally
    crop_x: tuple[float, float] = (0.0, 1.0)
    grayscale: bool = True
    #: invert grayscale so the (white) background is 0
    invert: bool = False
    #: CURL's action repeat for DMControl; 1 for gymnasium
    action_repeat: int = 1


ENVS: dict[str, EnvSpec] = {
    # the central half of the track: a random policy's cart stays within |x| < 1.2 (the crop's edge)
    # and moves ~4x more pixels than in the full 4.8-unit-wide view
    "CartPole-v1": EnvSpec("gymnasium", "CartPole-v1", crop=(0.35, 0.85), crop_x=(0.25, 0.75), invert=True),
    "Pendulum-v1": EnvSpec("gymnasium", "Pendulum-v1", invert=True),
    "Acrobot-v1": EnvSpec("gymnasium", "Acrobot-v1", invert=True),
    "MountainCar-v0": EnvSpec("gymnasium", "MountainCar-v0", invert=True),
    "HalfCheetah-v5": EnvSpec("gymnasium", "HalfCheetah-v5", grayscale=False),
    "Reacher-v5": EnvSpec("gymnasium", "Reacher-v5", grayscale=False),
    "Hopper-v5": EnvSpec("gymnasium", "Hopper-v5", grayscale=False),
    # CURL's action repeats (Laskin et al. 2020, appendix): cartpole 8, finger/walker 2, others 4.
    "dmc:cartpole-swingup": EnvSpec("dm_control", "cartpole-swingup", grayscale=False, action_repeat=8),
    "dmc:reacher-easy": EnvSpec("dm_control", "reacher-easy", grayscale=False, action_repeat=4),
    "dmc:finger-spin": EnvSpec("dm_control", "finger-spin", grayscale=False, action_repeat=2),
    "dmc:cheetah-run": EnvSpec("dm_control", "cheetah-run", grayscale=False, action_repeat=4),
    "dmc:walker-walk": EnvSpec("dm_control", "walker-walk", grayscale=False, action_repeat=2),
    "dmc:ball_in_cup-catch": EnvSpec("dm_control", "ball_in_cup-catch", grayscale=False, action_repeat=4),
}


def get_spec(name: str) -> EnvSpec:
    if name not in ENVS:
        raise KeyError(f"unknown RL environment {name!r}; known: {', '.join(ENVS)}")
    return ENVS[name]


def process_frame(rgb: np.ndarray, spec: EnvSpec, size: int) -> np.ndarray:
    """``[H, W, 3]`` uint8 render → ``[C, size, size]`` uint8 (crop, grayscale, area resize)."""
    h, w = rgb.shape[:2]
    top, bottom = int(round(spec.crop[0] * h)), int(round(spec.crop[1] * h))
    left, right = int(round(spec.crop_x[0] * w)), int(round(spec.crop_x[1] * w))
    img = Image.fromarray(np.ascontiguousarray(rgb[top:bottom, left:right]))
    if spec.grayscale:
        img = img.convert("L")
    # BOX (area) resampling keeps thin objects (CartPole's pole) visible after a large downscale.
    arr = np.asarray(img.resize((size, size), Image.BOX))
    if spec.grayscale and spec.invert:
        arr = 255 - arr
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


class PixelEnv:
    """One environment instance that returns ``(frame, state)`` pairs (see the module docstring)."""

    def __init__(self, name: str, size: int = 64, action_repeat: int | None = None) -> None:
        self.name, self.spec, self.size = name, get_spec(name), size
        self.action_repeat = action_repeat or self.spec.action_repeat
        if self.spec.backend == "gymnasium":
            # pygame renders off-screen; without these it probes for a display and audio device
            os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
            os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
            import gymnasium as gym

            kwargs: dict[str, Any] = {"render_mode": "rgb_array"}
            if self._is_mujoco():
                os.environ.setdefault("MUJOCO_GL", "egl")
                kwargs.update(width=size, height=size)
            self.env = gym.make(self.spec.id, **kwargs)
            self.action_space = self.env.action_space
            self.discrete = hasattr(self.action_space, "n")
        else:
            os.environ.setdefault("MUJOCO_GL", "egl")
            from dm_control import suite

            domain, task = self.spec.id.split("-")
            self._suite, self._domain, self._task = suite, domain, task
            self.env = None
            self.discrete = False

    def _is_mujoco(self) -> bool:
        return self.spec.id.split("-")[0] in {"HalfCheetah", "Reacher", "Hopper", "Walker2d", "Ant"}

    # -- state and pixels
    def _state(self, obs: Any) -> np.ndarray:
        if self.spec.backend == "dm_control":
            return np.concatenate([np.ravel(v) for v in obs.values()]).astype(np.float64)
        if self._is_mujoco():
            data = self.env.unwrapped.data
            return np.concatenate([data.qpos, data.qvel]).astype(np.float64)
        return np.asarray(obs, dtype=np.float64).ravel()

    def _frame(self) -> np.ndarray:
        if self.spec.backend == "dm_control":
            rgb = self.env.physics.render(height=self.size, width=self.size, camera_id=0)
        else:
            rgb = self.env.render()
        return process_frame(rgb, self.spec, self.size)

    # -- API
    def reset(self, seed: int) -> tuple[np.ndarray, np.ndarray]:
        if self.spec.backend == "dm_control":
            self.env = self._suite.load(self._domain, self._task, task_kwargs={"random": seed})
            self.env.physics.model.vis.quality.shadowsize = 0  # ~2x faster rendering, see offline-data.md
            self.action_space = self.env.action_spec()
            obs = self.env.reset().observation
        else:
            obs, _ = self.env.reset(seed=seed)
            self.action_space.seed(seed)
        return self._frame(), self._state(obs)

    def sample_action(self, rng: np.random.Generator) -> np.ndarray:
        """A uniformly random action (the collection policy), as a float array."""
        if self.discrete:
            return np.asarray([rng.integers(self.action_space.n)], dtype=np.float64)
        if self.spec.backend == "gymnasium":
            low, high = self.action_space.low, self.action_space.high
        else:
            low, high = self.action_space.minimum, self.action_space.maximum
        return rng.uniform(low, high).astype(np.float64)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, bool, bool]:
        """``(frame, state, reward summed over the action repeat, terminated, truncated)``."""
        total, terminated, truncated = 0.0, False, False
        for _ in range(self.action_repeat):
            if self.spec.backend == "dm_control":
                ts = self.env.step(action)
                total += float(ts.reward or 0.0)
                obs, truncated = ts.observation, ts.last()
            else:
                a = int(action[0]) if self.discrete else np.asarray(action, dtype=np.float32)
                obs, r, terminated, truncated, _ = self.env.step(a)
                total += float(r)
            if terminated or truncated:
                break
        return self._frame(), self._state(obs), total, bool(terminated), bool(truncated)

    def close(self) -> None:
        if self.env is not None and hasattr(self.env, "close"):
            self.env.close()


def rollout(env: PixelEnv, seed: int, max_steps: int = 500) -> dict[str, np.ndarray]:
    """One episode of ``env`` under the uniform random policy, as arrays (the NPZ episode layout):

    ``frames`` uint8 ``[T+1, C, H, W]``, ``state`` ``[T+1, d]``, ``action`` ``[T, a]``, ``reward`` ``[T]``,
    ``terminated`` (whether the episode ended in a terminal state rather than a time limit).
    """
    rng = np.random.default_rng(seed)
    frame, state = env.reset(seed)
    frames, states, actions, rewards = [frame], [state], [], []
    terminated = False
    for _ in range(max_steps):
        a = env.sample_action(rng)
        frame, state, r, terminated, truncated = env.step(a)
        frames.append(frame)
        states.append(state)
        actions.append(a)
        rewards.append(r)
        if terminated or truncated:
            break
    return {
        "frames": np.stack(frames),
        "state": np.stack(states),
        "action": np.stack(actions),
        "reward": np.asarray(rewards, dtype=np.float64),
        "terminated": np.asarray(terminated),
    }
