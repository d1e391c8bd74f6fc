"""Ray Train's ``TorchTrainer`` without two fixed waits of Ray 2.60's ``fit()``.

Both were found in the controller's own timing log (``ray-train-sys-controller-*.log``) of a demo
pretrain stage on 2 cores, and neither is training:

* **1.0 s at the end of every run.** Ray Train starts a ``PlacementGroupCleaner`` actor whose
  monitor thread blocks on its queue for ``check_interval_s`` (1 s) between polls. On a normal
  shutdown the controller asks it to stop and waits, and the thread only sees the stop flag when
  that wait runs out: an empty ``fit()`` returned 1.00 s after its training function had.
  :class:`~stages.pretrain.pg_cleaner.PromptPlacementGroupCleaner` wakes the thread when asked to
  stop. (A training run ends at a random point of that 1 s poll, so a real run saves 0.5 s on
  average; an empty ``fit()`` the whole second.)
* **1.2 s before the first run of a Ray session.** The controller's first act is a blocking resource
  request to Ray's ``AutoscalingCoordinator``, a detached actor it creates on first use: a new
  process the stage then waits for. :func:`prestart_autoscaling_coordinator` creates it when the
  stage starts Ray, so its process starts while the driver prepares the training data.

Both lean on Ray internals; if they move, the trainer falls back to Ray's own behaviour (with its
waits) instead of failing, and ``tests/stages/pretrain/test_ray_train.py`` fails to say so.
"""

from __future__ import annotations

import logging
from typing import Any

from ray.train.torch import TorchTrainer

log = logging.getLogger(__name__)

try:  # Ray Train V2 internals (Ray 2.60)
    from ray.train.v2._internal.callbacks import placement_group_callback as _pg_callback
    from ray.train.v2._internal.callbacks.placement_group_callback import PlacementGroupCleanerCallback

    from stages.pretrain.pg_cleaner import PromptPlacementGroupCleaner
except ImportError:  # pragma: no cover - another Ray version: keep Ray's own cleaner
    PlacementGroupCleanerCallback = None


if PlacementGroupCleanerCallback is not None:

    class PromptCleanerCallback(PlacementGroupCleanerCallback):
        """Ray's cleaner callback, launching :class:`~stages.pretrain.pg_cleaner.PromptPlacementGroupCleaner`.

        Runs in the Train controller (its own process): the module-level name Ray's callback launches
        is pointed at the subclass there, and nowhere else."""

        def after_controller_start(self, train_run_context: Any) -> None:  # noqa: ANN401
            _pg_callback.PlacementGroupCleaner = PromptPlacementGroupCleaner
            super().after_controller_start(train_run_context)


class PromptTorchTrainer(TorchTrainer):
    """``TorchTrainer`` whose placement-group cleaner stops without its 1 s wait (see module doc)."""

    def _create_default_callbacks(self) -> list[Any]:
        callbacks = super()._create_default_callbacks()
        if PlacementGroupCleanerCallback is None:  # pragma: no cover
            return callbacks
        return [PromptCleanerCallback() if type(c) is PlacementGroupCleanerCallback else c for c in callbacks]


def prestart_autoscaling_coordinator() -> None:
    """Create Ray's ``AutoscalingCoordinator`` actor now, without waiting for it (see module doc).

    Idempotent: the actor is named and detached, and later callers (Ray Train's controller, Ray
    Data) get this one. Any failure only costs the wait it was meant to save."""
    try:
        from ray.data._internal.cluster_autoscaler.default_autoscaling_coordinator import (
            get_or_create_autoscaling_coordinator,
        )

        get_or_create_autoscaling_coordinator()
    except Exception as e:  # noqa: BLE001 - an optimisation only
        log.debug("AutoscalingCoordinator not prestarted: %s", e)
