"""Progress lines stay readable when output is a log (DVC, CI), a bar only on a terminal."""

from __future__ import annotations

import io

import pytest

from stages.common.progress import progress


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_one_line_per_ten_percent_and_no_carriage_returns() -> None:
    out = io.StringIO()
    assert list(progress(range(100), "pretrain: epochs", stream=out)) == list(range(100))
    lines = out.getvalue().splitlines()
    assert len(lines) == 10 and "\r" not in out.getvalue()
    assert lines[0].startswith("pretrain: epochs 10/100 (10%)") and "left" in lines[0]
    assert lines[-1].startswith("pretrain: epochs 100/100 (100%)") and "left" not in lines[-1]


def test_a_resumed_run_counts_from_where_it_was_and_an_early_stop_is_reported() -> None:
    out = io.StringIO()
    for i in progress(range(40, 50), "epochs", total=50, initial=40, stream=out):
        if i == 46:
            break
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("epochs 45/50 (90%)")  # the first 10 % boundary after 80 %
    assert lines[-1].startswith("epochs 46/50 (92%)") and len(lines) == 2


def test_unknown_totals_report_at_doubling_counts() -> None:
    out = io.StringIO()
    list(progress(iter(range(20)), "rows", stream=out))
    assert [line.split()[1] for line in out.getvalue().splitlines()] == ["1", "2", "4", "8", "16", "20"]


def test_a_terminal_gets_a_tqdm_bar_and_the_switch_silences_it(monkeypatch: pytest.MonkeyPatch) -> None:
    tty = _Tty()
    assert list(progress(range(5), "views", stream=tty)) == list(range(5))
    assert "\r" in tty.getvalue() and "5/5" in tty.getvalue()
    monkeypatch.setenv("CONTRAFLOW_PROGRESS", "0")
    quiet = io.StringIO()
    assert list(progress(range(5), "views", stream=quiet)) == list(range(5))
    assert quiet.getvalue() == ""


def test_with_work_sizes_the_time_left_follows_work_not_item_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Longest first (as fine-tune tasks start): one run of 90 s, then ten of 1 s. Counting items,
    the first line (after 2 of 11) says ~410 s left; by work, 9 s."""
    import stages.common.progress as prog

    clock = [0.0]
    monkeypatch.setattr(prog.time, "perf_counter", lambda: clock[0])
    sizes = [90.0] + [1.0] * 10

    def runs():  # noqa: ANN202
        for s in sizes:
            clock[0] += s
            yield s

    out = io.StringIO()
    list(progress(runs(), "finetune: runs", total=len(sizes), stream=out, work=(lambda s: s, sum(sizes))))
    assert out.getvalue().splitlines()[0] == "finetune: runs 2/11 (18%) 91 s, ~9 s left"
