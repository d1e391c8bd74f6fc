"""Contrastive and non-contrastive losses behind one name -> loss registry (lightly style).

Losses are plain ``nn.Module``s taking the two views' embeddings after the projection head and
returning a scalar, so they work in any training loop. A recipe picks one by name
(``pretrain.loss``) and passes its options (``pretrain.loss_options``), validated against the loss's
constructor before any stage runs: an unknown or ill-typed option is a one-line error naming the key.

Registered by the sibling modules of this package (``stages/common/losses/__init__.py`` imports them
all, so the registry is always whole):

=====================  =========================================  ===================================
name                   paper                                      across workers
=====================  =========================================  ===================================
ntxent / infonce       SimCLR (Chen 2020), InfoNCE (Oord 2018)    gathers negatives with gradients
dcl, dclw              Decoupled CL (Yeh 2022)                    gathers negatives with gradients
supcon                 Supervised CL (Khosla 2020)                gathers embeddings and labels
mochi                  Hard negative mixing (Kalantidis 2020)     gathers; hardest among global batch
ntxent_individual      per-sample temperature (AutoTemp, MACL)    gathers negatives with gradients
cwcl                   CWCL (Srinivasa 2023)                      gathers candidates and weights
vicreg                 VICReg (Bardes 2022)                       global variance/covariance
swav                   SwAV (Caron 2020)                          Sinkhorn sums all-reduced
byol                   BYOL (Grill 2020), SimSiam at momentum 0   local; predictor grads averaged
moco                   MoCo v2 (He 2020, Chen 2020)               keys gathered into a shared queue
=====================  =========================================  ===================================

The convention for "gathers": each rank's loss is the mean over its own samples with the *global*
batch as candidates, so the mean of the per-rank losses equals the single-process loss on the
concatenated batch, and DDP's gradient averaging (or ``loss / world_size()``) yields exactly the
single-process gradient. The tests check this on 2 gloo processes for every gathering loss.

Losses that own modules (BYOL's predictor and momentum target, MoCo's key encoder and queue, SwAV's
prototypes) follow the small :class:`ModelLoss` protocol the pretraining loop drives.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from pydantic import ConfigDict, ValidationError, create_model
from torch import nn

from stages.common.distributed import world_size

__all__ = [
    "LossOptionError",
    "ModelLoss",
    "build_loss",
    "check_loss_options",
    "check_options",
    "get_loss",
    "list_losses",
    "loss_option_names",
    "register_loss",
    "sync_loss_gradients",
]

_REGISTRY: dict[str, type[nn.Module]] = {}

#: constructor arguments the loop sets itself, never recipe options, and where they come from instead
_RESERVED = {
    "temperature": "set it as pretrain.temperature, not as a loss option",
    "dim": "inferred from the model (pretrain.head.out_dim), not a loss option",
}

_M = TypeVar("_M", bound=type[nn.Module])


def register_loss(name: str, *aliases: str) -> Callable[[_M], _M]:
    """Class decorator registering a loss module under ``name`` (and aliases)."""

    def decorator(cls: _M) -> _M:
        for key in (name, *aliases):
            if key in _REGISTRY and _REGISTRY[key] is not cls:
                raise ValueError(f"loss name {key!r} is already registered")
            _REGISTRY[key] = cls
        return cls

    return decorator


def _loss_class(name: str) -> type[nn.Module]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown loss {name!r}; known losses: {', '.join(list_losses())}") from None


def get_loss(name: str, **kwargs: Any) -> nn.Module:
    """Instantiate the loss registered as ``name`` with ``kwargs`` (passed on unchanged).

    Raises:
        KeyError: if ``name`` is unknown; the message lists the known names.
        TypeError: if the loss takes no argument of one of the ``kwargs``' names.
    """
    return _loss_class(name)(**kwargs)


def list_losses() -> list[str]:
    """Sorted registered loss names, aliases included."""
    return sorted(_REGISTRY)


def _parameters(cls: type[nn.Module]) -> dict[str, inspect.Parameter]:
    params = dict(inspect.signature(cls.__init__).parameters)
    params.pop("self", None)
    return {
        k: p
        for k, p in params.items()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }


def option_names(cls: type) -> list[str]:
    """The recipe options (``pretrain.loss_options`` keys) the loss or objective class accepts."""
    return sorted(k for k in _parameters(cls) if k not in _RESERVED)


def loss_option_names(name: str) -> list[str]:
    """The recipe options (``pretrain.loss_options`` keys) the loss ``name`` accepts."""
    return option_names(_loss_class(name))


class LossOptionError(ValueError):
    """A bad ``pretrain.loss_options`` entry; ``key`` names it (empty for the options as a whole)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def check_loss_options(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """Validate ``options`` for the loss ``name`` against its constructor's annotations.

    Returns the options coerced to the annotated types. Raises :class:`LossOptionError` naming the
    first unknown or ill-typed key, or (key ``""``) when the loss rejects the values as a whole.
    """
    return check_options(_loss_class(name), options, f"loss {name!r}")


def check_options(cls: type, options: Mapping[str, Any], what: str) -> dict[str, Any]:
    """:func:`check_loss_options` for any class: a registry loss or a domain objective (``what``
    names it in the messages)."""
    params = _parameters(cls)
    hints = typing.get_type_hints(cls.__init__)
    for key in options:
        if key in _RESERVED:
            raise LossOptionError(key, _RESERVED[key])
        if key not in params:
            known = ", ".join(option_names(cls)) or "none"
            raise LossOptionError(key, f"unknown option for {what} (known: {known})")
    fields = {k: (hints.get(k, Any), p.default) for k, p in params.items() if k in options}
    model = create_model(f"{cls.__name__}Options", __config__=ConfigDict(extra="forbid"), **fields)
    try:
        coerced = model.model_validate(dict(options)).model_dump()
    except ValidationError as e:
        first = e.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise LossOptionError(key, f"{first['msg']} (got {first.get('input')!r})") from None
    try:
        cls(**coerced)  # value checks (ranges, combinations) live in the constructors
    except (TypeError, ValueError) as e:
        raise LossOptionError("", str(e)) from None
    return coerced


def build_loss(name: str, temperature: float, options: Mapping[str, Any] | None = None) -> nn.Module:
    """The loss a recipe asks for: ``pretrain.loss`` with ``pretrain.loss_options``.

    ``pretrain.temperature`` goes to every loss that has a temperature; VICReg and BYOL have none
    and ignore it (the ablation recipe therefore sweeps temperature only for the others).
    """
    opts = check_loss_options(name, options or {})
    if "temperature" in _parameters(_loss_class(name)):
        opts["temperature"] = temperature
    return get_loss(name, **opts)


class ModelLoss(nn.Module):
    """A loss that owns modules trained alongside the encoder; the pretraining loop drives it.

    The loop calls, in order:

    * ``attach(model)`` once, before the optimiser is built, with the (un-wrapped)
      ``EncoderWithHead``: build predictors, prototypes or a momentum copy of the model here.
      The loss's own trainable parameters are then optimised together with the model's.
    * ``forward(z0, z1, inputs=batch)`` every step, where ``batch`` is the collated input of both
      views (``z0`` are the first half): a momentum target runs its own forward on it.
    * ``on_step(model)`` after every optimiser step (momentum updates).

    Its ``state_dict`` is checkpointed with the model, so a resumed run keeps its target and queue.
    """

    #: whether ``forward`` wants the collated inputs as ``inputs=``
    needs_inputs: bool = False

    def attach(self, model: nn.Module) -> None:
        """Build the modules that depend on the model (default: nothing)."""

    @torch.no_grad()
    def on_step(self, model: nn.Module) -> None:
        """Update after an optimiser step (default: nothing)."""


def sync_loss_gradients(loss: nn.Module) -> None:
    """Average the gradients of ``loss``'s own parameters over ranks (what DDP does for the model).

    Without it, every worker's predictor or prototypes would drift apart. A no-op on one process.
    """
    if world_size() == 1:
        return
    for p in loss.parameters():
        if not p.requires_grad:
            continue
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
        p.grad /= world_size()
