"""Typed options of the RL domain (see ``domains/options.py``): each source's ``data.options``,
each encoder's arguments, and ``evaluate.domain`` (the state probe, ``tasks.state_probe``, and the
optional stable-baselines3 agent, ``agent.agent_eval``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from domains.options import Options, encoder_models, source_models
from domains.rl.encoders import ENCODERS
from domains.rl.readers import SOURCES


class AgentOptions(Options):
    #: a stable-baselines3 algorithm (``getattr(stable_baselines3, algo)``)
    algo: Literal["A2C", "DDPG", "DQN", "PPO", "SAC", "TD3"] = "PPO"
    #: the budget, in environment steps after action repeat
    steps: int = Field(50_000, ge=1)
    inputs: list[Literal["pretrained", "pixels", "state"]] = ["pretrained", "pixels", "state"]
    seeds: list[int] = Field([0], min_length=1)
    eval_episodes: int = Field(10, ge=1)
    #: passed to the algorithm's constructor (e.g. buffer_size, learning_starts)
    algo_kwargs: dict[str, Any] | None = None


class EvaluateOptions(Options):
    #: one name per state dimension, for the R² table (default s0, s1...)
    state_names: list[str] | None = None
    #: most epochs of the supervised pixels-to-state baseline (the best on held-out training
    #: episodes is kept)
    supervised_epochs: int = Field(20, ge=1)
    #: also probe the raw pixels of the current frame stack
    pixel_ridge: bool = True
    agent: AgentOptions | None = None


SOURCE_OPTIONS = source_models(SOURCES, "rl")
ENCODER_OPTIONS = encoder_models(ENCODERS, "rl")
EVALUATE_OPTIONS = EvaluateOptions
