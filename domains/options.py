"""Typed option models shared by the domains: a source's ``data.options``, an encoder's ``encoder:``
and a domain's ``evaluate.domain`` are validated against them when a recipe loads, so a mistyped key
or a wrong type is a one-line error naming the key before any work starts — not a ``TypeError``
inside a Ray worker after three stages ran.

Source and encoder models are derived from the signature of the function that really reads the
options (``list_units``, the encoder's constructor), so they cannot drift from the code: a new
keyword argument is a new option, with its annotation as its type and its default as its default.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, create_model


class Options(BaseModel):
    """An option model: unknown keys are errors (``extra="forbid"``)."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)


class NoOptions(Options):
    """A section that takes no options: every key in it is unknown."""


def signature_options(
    fn: Callable[..., Any],
    name: str,
    base: type[Options] = Options,
    skip: tuple[str, ...] = (),
    **overrides: Any,
) -> type[Options]:
    """A model whose fields are ``fn``'s keyword parameters (annotation → type, default → default).

    ``skip`` leaves out parameters the user must not set (filled in by the code); ``overrides`` maps a
    parameter to a ``(type, default)`` pair that is stricter than its annotation (a nested model).
    ``**kwargs`` of ``fn`` are covered by ``base``'s own fields.
    """
    hints = typing.get_type_hints(fn.__init__ if inspect.isclass(fn) else fn)
    fields: dict[str, Any] = {}
    for p in inspect.signature(fn).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.name in skip or p.name == "self":
            continue
        default = ... if p.default is p.empty else p.default
        fields[p.name] = overrides.pop(p.name, (hints.get(p.name, Any), default))
    if overrides:
        raise TypeError(f"{name}: overrides for parameters {sorted(overrides)} that {fn.__name__} lacks")
    return create_model(name, __base__=base, __module__=getattr(fn, "__module__", __name__), **fields)


def source_models(
    sources: Mapping[str, Any],
    prefix: str,
    base: type[Options] = Options,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, type[Options]]:
    """``{source name: model of its list_units' options}`` for a domain's ``SOURCES``."""
    over = overrides or {}
    return {
        name: signature_options(src.list_units, f"{prefix}_{name}_options", base, **over.get(name, {}))
        for name, src in sources.items()
    }


def encoder_models(encoders: Mapping[str, Callable[..., Any]], prefix: str) -> dict[str, type[Options]]:
    """``{encoder name: model of its constructor's arguments}``, in the registry's order (the first
    is the default encoder)."""
    return {
        name: signature_options(cls, f"{prefix}_{name}_encoder_options") for name, cls in encoders.items()
    }


def build_named(registry: Mapping[str, Callable[..., Any]], cfg: Mapping[str, Any], what: str) -> Any:  # noqa: ANN401
    """The one encoder factory: ``cfg["name"]`` (default: the registry's first entry) picks the class,
    the other keys are its arguments. ``what`` names the domain in the error for an unknown name."""
    cfg = dict(cfg)
    name = cfg.pop("name", next(iter(registry)))
    if name not in registry:
        raise KeyError(f"unknown {what} encoder {name!r}; known: {sorted(registry)}")
    return registry[name](**cfg)
