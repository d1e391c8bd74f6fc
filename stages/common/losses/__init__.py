"""The loss package: a name -> loss registry (``registry``) and the losses that register into it.

Importing the package imports every loss module, so ``build_loss``/``list_losses`` always see the
whole registry. Loss modules import ``registry`` (never this package), so there is no import cycle.
"""

from stages.common.losses import extra, momentum, ntxent  # noqa: F401  (register on import)
from stages.common.losses.ntxent import NTXentLoss
from stages.common.losses.registry import (
    LossOptionError,
    ModelLoss,
    build_loss,
    check_loss_options,
    check_options,
    get_loss,
    list_losses,
    loss_option_names,
    option_names,
    register_loss,
    sync_loss_gradients,
)

__all__ = [
    "LossOptionError",
    "ModelLoss",
    "NTXentLoss",
    "build_loss",
    "check_loss_options",
    "check_options",
    "get_loss",
    "list_losses",
    "loss_option_names",
    "option_names",
    "register_loss",
    "sync_loss_gradients",
]
