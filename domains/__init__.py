"""Domain registry: ``register_domain`` / ``get_domain`` / ``list_domains`` (timm-style)."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from domains.base import Domain, DomainResult, EvalContext, Row, Source, ViewPolicy

__all__ = [
    "Domain",
    "DomainResult",
    "EvalContext",
    "Row",
    "Source",
    "ViewPolicy",
    "get_domain",
    "list_domains",
    "register_domain",
]

_REGISTRY: dict[str, type[Domain]] = {}
# Domains are imported lazily so that `import domains` stays cheap and a domain's heavy
# dependencies (MONAI, librosa...) load only when that domain is used.
_BUILTIN = {
    "timeseries": "domains.timeseries",
    "rl": "domains.rl",
    "audio": "domains.audio",
    "pointcloud": "domains.pointcloud",
    "medical": "domains.medical",
}


def register_domain(name: str) -> Callable[[type[Domain]], type[Domain]]:
    def wrap(cls: type[Domain]) -> type[Domain]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"domain {name!r} is already registered by {_REGISTRY[name].__module__}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def list_domains() -> list[str]:
    return sorted(set(_REGISTRY) | set(_BUILTIN))


def get_domain(name: str) -> Domain:
    if name not in _REGISTRY and name in _BUILTIN:
        importlib.import_module(_BUILTIN[name])
    if name not in _REGISTRY:
        raise KeyError(f"unknown domain {name!r}; known: {', '.join(list_domains())}")
    return _REGISTRY[name]()
