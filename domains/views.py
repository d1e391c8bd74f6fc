"""The one view-policy engine every domain uses.

A domain contributes *steps* (augmentations written with its field's library: numpy/SciPy for time
series and frame stacks, librosa for audio, trimesh-style geometry for point clouds, MONAI for
volumes) and named *policies* (lists of steps). The engine does the rest, the same way for all:

* resolves a :class:`~domains.base.ViewPolicy` (a named policy, or explicit ``params["steps"]``);
* validates every step before applying any (so a typo in a ``p < 1`` step fails on the first call,
  not on whichever call happens to draw it), with one-line errors naming the recipe key
  ``views.policy[i]``;
* applies the steps in order, step ``{"name", "p"=1.0, **params}`` with probability ``p``, all
  randomness from the caller's seeded ``numpy`` generator (a seeded generator reproduces a view).

A step is ``f(x, rng, **params) -> new array``; parameters named in ``context`` (e.g. the audio
sample rate ``sr``) are filled in by the domain at apply time for the steps that declare them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from domains.base import ViewPolicy

Step = dict[str, Any]
Augmentation = Callable[..., np.ndarray]
RESERVED = ("name", "p")
KEY = "views.policy"


class PolicyError(ValueError):
    """A view policy a recipe cannot use (bad name, parameter or probability)."""

    def __str__(self) -> str:  # KeyError would quote the message; keep it one plain line
        return str(self.args[0]) if self.args else ""


class UnknownPolicy(PolicyError, KeyError):
    """No policy or step of that name (a ``KeyError`` too, for callers that look names up)."""


class UnknownParameter(PolicyError, TypeError):
    """A step parameter the step's function does not take (a ``TypeError`` too, as Python's own)."""


def as_float32(x: np.ndarray, shape: str, ndim: int, last: int | None = None) -> np.ndarray:
    """``x`` as float32 (no copy when it already is: steps must not write into it in place), or a
    one-line error naming the expected ``shape`` (``[channels, time] array``, ...)."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != ndim or (last is not None and x.shape[-1] != last):
        raise ValueError(f"expected a {shape}, got shape {x.shape}")
    return x


def accepted_parameters(fn: Callable[..., Any], skip: int = 2) -> tuple[str, ...]:
    """The keyword parameters of ``fn`` after its first ``skip`` (``x``, ``rng``); ``**kwargs``
    excluded, so a step never silently swallows a misspelt parameter."""
    params = list(inspect.signature(fn).parameters.values())[skip:]
    return tuple(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))


class ViewEngine:
    """Named policies over registered steps, validated and applied one way for every domain.

    ``label`` names the domain in errors ("unknown audio view policy ..."); ``prepare`` checks and
    copies the input (the input is never written to, and a policy whose steps are all skipped must
    not alias it); ``context`` lists the parameters the domain fills in at apply time.
    """

    def __init__(
        self,
        label: str,
        steps: Mapping[str, Augmentation],
        policies: Mapping[str, list[Step]],
        prepare: Callable[[np.ndarray], np.ndarray] | None = None,
        context: tuple[str, ...] = (),
        draw_every_step: bool = False,
    ) -> None:
        self.label = label
        self.steps = dict(steps)
        self.policies = dict(policies)
        self.prepare = prepare or (lambda x: np.array(x, dtype=np.float32))
        self.context = context
        # audio's views have always drawn one number per step, p = 1 included: kept so that a seed
        # gives the views it gave before the engine was shared
        self.draw_every_step = draw_every_step

    # -- resolving and validating -----------------------------------------------------------------
    def register(self, name: str, fn: Augmentation) -> Augmentation:
        """Add a step (a plug-in or a test may extend a domain's steps)."""
        if name in RESERVED:
            raise ValueError(f"{name!r} is reserved in a step")
        self.steps[name] = fn
        return fn

    def parameters(self, name: str) -> tuple[str, ...]:
        """The parameters a recipe may give step ``name`` (context parameters excluded)."""
        return tuple(p for p in accepted_parameters(self.steps[name]) if p not in self.context)

    def resolve(self, policy: ViewPolicy | str) -> list[Step]:
        """The validated steps of ``policy``: its explicit ``params["steps"]`` or the named policy."""
        if isinstance(policy, str):
            policy = ViewPolicy(policy)
        steps = policy.params.get("steps") or self.policies.get(policy.name)
        if steps is None:
            raise UnknownPolicy(
                f"{KEY}: unknown {self.label} view policy {policy.name!r}; known: {sorted(self.policies)}"
            )
        self.check(steps)
        return steps

    def check(self, steps: list[Step]) -> None:
        """Raise a one-line :class:`PolicyError` naming ``views.policy[i]`` for the first bad step."""
        if not isinstance(steps, list):
            raise PolicyError(f"{KEY}: expected a list of steps, got {type(steps).__name__}")
        for i, step in enumerate(steps):
            where = f"{KEY}[{i}]"
            if not isinstance(step, Mapping):
                raise PolicyError(f"{where}: expected a step {{name, p, ...}}, got {step!r}")
            name = step.get("name")
            if name not in self.steps:
                raise UnknownPolicy(
                    f"{where}: unknown {self.label} augmentation {name!r}; known: {', '.join(sorted(self.steps))}"
                )
            p = step.get("p", 1.0)
            if isinstance(p, bool) or not isinstance(p, int | float) or not 0.0 <= p <= 1.0:
                raise PolicyError(f"{where}.p: {name}: p must be in [0, 1], got {p!r}")
            accepted = self.parameters(name)
            unknown = sorted(set(step) - set(RESERVED) - set(accepted))
            if unknown:
                raise UnknownParameter(
                    f"{where}: {name}: unknown parameter(s) {unknown}; accepted: {list(accepted)}"
                )

    # -- applying ---------------------------------------------------------------------------------
    def apply(self, x: np.ndarray, rng: np.random.Generator, steps: list[Step], **context: Any) -> np.ndarray:
        """Apply validated ``steps`` in order; step ``i`` runs with probability ``p`` (one draw from
        ``rng`` per step with ``p < 1``, none otherwise unless ``draw_every_step``)."""
        self.check(steps)
        out = self.prepare(x)
        for step in steps:
            p = step.get("p", 1.0)
            if (p < 1.0 or self.draw_every_step) and rng.random() >= p:
                continue
            fn = self.steps[step["name"]]
            params = {k: v for k, v in step.items() if k not in RESERVED}
            for key in self.context:
                if key in context and key in accepted_parameters(fn):
                    params.setdefault(key, context[key])
            out = fn(out, rng, **params)
        return out

    def view(
        self, x: np.ndarray, rng: np.random.Generator, policy: ViewPolicy | str, **context: Any
    ) -> np.ndarray:
        """One random view of ``x`` under ``policy`` (resolve, validate, apply)."""
        return self.apply(x, rng, self.resolve(policy), **context)
