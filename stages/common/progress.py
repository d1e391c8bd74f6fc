"""Progress for long loops that stays readable in DVC logs.

On a terminal: a tqdm bar. Otherwise (``dvc repro`` capturing output, CI, a Ray worker's log): no
carriage-return redraws, which pile up as one unreadable line, but one plain line each time the
loop crosses another ``every_percent`` of its total (or at 1, 2, 4, 8... items when the total is
unknown), and one at the end::

    pretrain: epochs 10/50 (20%) 12 s, ~48 s left

Use it around any loop a user waits on::

    for epoch in progress(range(start, cfg.epochs), "pretrain: epochs", total=cfg.epochs, initial=start):
        ...

``CONTRAFLOW_PROGRESS=0`` silences it (tests, nested loops).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import IO, TypeVar

T = TypeVar("T")


def enabled() -> bool:
    return os.environ.get("CONTRAFLOW_PROGRESS", "1") not in ("0", "false", "no")


def _lines(
    items: Iterable[T],
    desc: str,
    total: int | None,
    initial: int,
    every_percent: float,
    stream: IO[str],
    work: tuple[Callable[[T], float], float] | None = None,
) -> Iterator[T]:
    start = time.perf_counter()
    done = initial
    work_done = 0.0
    next_report = 1 if total is None else None
    last_bucket = -1 if total is None else int(100 * initial / max(total, 1) // every_percent)

    reported = [initial]

    def report() -> None:
        reported[0] = done
        elapsed = time.perf_counter() - start
        if total:
            pct = 100 * done / total
            if work is not None and work_done > 0:  # items of unequal size: time per unit of work
                left = elapsed / work_done * max(work[1] - work_done, 0.0)
            else:
                left = elapsed / max(done - initial, 1) * (total - done)
            tail = f", ~{left:.0f} s left" if done < total else ""
            print(f"{desc} {done}/{total} ({pct:.0f}%) {elapsed:.0f} s{tail}", file=stream, flush=True)
        else:
            print(f"{desc} {done} {elapsed:.0f} s", file=stream, flush=True)

    try:
        for item in items:
            yield item
            done += 1
            if work is not None:
                work_done += work[0](item)
            if total is not None:
                bucket = int(100 * done / max(total, 1) // every_percent)
                if bucket > last_bucket or done == total:
                    last_bucket = bucket
                    report()
            elif done >= next_report:
                next_report *= 2
                report()
    finally:  # the end, an early break or an error: where the loop stopped is always reported
        if done != reported[0]:
            report()


def progress(
    items: Iterable[T],
    desc: str,
    total: int | None = None,
    initial: int = 0,
    every_percent: float = 10.0,
    stream: IO[str] | None = None,
    work: tuple[Callable[[T], float], float] | None = None,
) -> Iterator[T]:
    """Iterate ``items`` while showing progress on ``stream`` (stderr): a tqdm bar on a terminal,
    plain lines every ``every_percent`` otherwise. ``total`` defaults to ``len(items)`` when known;
    ``initial`` counts items already done (a resumed run). ``work``, ``(size of an item, size of
    all)``, makes the time left follow work rather than item counts (runs of unequal length)."""
    stream = stream if stream is not None else sys.stderr
    if total is None and hasattr(items, "__len__"):
        total = initial + len(items)  # type: ignore[arg-type]
    if not enabled():
        return iter(items)
    if stream.isatty():
        from tqdm import tqdm

        return iter(
            tqdm(
                items,
                desc=desc,
                total=total,
                initial=initial,
                file=stream,
                mininterval=1.0,
                dynamic_ncols=True,
            )
        )
    return _lines(items, desc, total, initial, every_percent, stream, work)
