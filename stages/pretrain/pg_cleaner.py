"""Ray Train's placement-group cleaner, stopping as soon as it is asked to (see ``ray_train``).

A module of its own, importing nothing but Ray's cleaner: the cleaner actor's process imports it
to unpickle the class, and importing torch there (as ``ray_train`` does) delayed every run's start
by about 0.5 s on 2 cores.
"""

from __future__ import annotations

from typing import Any

from ray.train.v2._internal.execution.controller.placement_group_cleaner import PlacementGroupCleaner


class PromptPlacementGroupCleaner(PlacementGroupCleaner):
    """Ray's cleaner, whose stop wakes its monitor thread instead of waiting out its poll."""

    _latest: Any = None

    def register_placement_group(self, placement_group: Any) -> None:  # noqa: ANN401
        self._latest = placement_group
        super().register_placement_group(placement_group)

    def _stop_monitor_thread(self) -> bool:
        self._stop_event.set()
        # The thread is blocked in ``queue.get(timeout=check_interval_s)``: hand it the placement
        # group it already watches (no change of state), so it returns now and sees the flag. With
        # none registered yet (a run that failed before placing its workers) there is nothing to
        # hand: the monitor reads every queued item as a group, so it waits out its poll instead.
        if self._latest is not None:
            self._pg_queue.put(self._latest)
        return super()._stop_monitor_thread()
