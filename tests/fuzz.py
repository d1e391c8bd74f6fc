"""The reader-contract fuzz's scale knob and its report.

``fuzz_examples(default)``: the Hypothesis example count of a fuzz test, ``CONTRAFLOW_FUZZ_EXAMPLES``
when set (``make fuzz``: 1,000), else the test's own few dozen (``make test``/CI).

As a pytest plugin (``pytest -p tests.fuzz``) it counts, per domain, the inputs ingest's
``read_unit`` was handed, how many were quarantined (whole unit or some rows, with a reason), how
many crashed (``read_unit`` raised instead of quarantining: a broken contract) and the failed
tests, and prints that table at the end of the run.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np

ENV = "CONTRAFLOW_FUZZ_EXAMPLES"
COUNTS: dict[str, Counter] = defaultdict(Counter)


def fuzz_examples(default: int) -> int:
    """The example count for one fuzz test: ``$CONTRAFLOW_FUZZ_EXAMPLES`` or ``default``."""
    value = os.environ.get(ENV, "").strip()
    if not value:
        return default
    try:
        n = int(value)
    except ValueError:
        raise ValueError(f"{ENV}={value!r}: expected a positive integer") from None
    if n < 1:
        raise ValueError(f"{ENV}={n}: expected a positive integer")
    return n


def read_records(domain: str, source: str, unit: dict[str, Any]) -> list[dict[str, Any]]:
    """Ingest's ``read_unit`` on one listed unit, looked up at call time so that ``-p tests.fuzz``
    counts it whatever the calling module imported."""
    import stages.ingest.__main__ as ingest

    return ingest.read_unit({"unit": json.dumps(unit, sort_keys=True)}, domain, source)


def check_records(records: list[dict[str, Any]], check_x: Callable[[np.ndarray], None]) -> None:
    """The reader contract every unit keeps, in every domain: at least one record; each record is
    a row or a quarantine reason, never both or neither; a reason is a non-empty line; a row
    decodes to an ``x`` that the domain's ``check_x`` accepts (its shape, dtype, finiteness)."""
    from stages.common.rows import decode_row

    assert records, "a unit yields at least one record (a row or its quarantine)"
    for r in records:
        assert (r["row"] is None) != (r["reason"] is None), r
        if r["reason"] is not None:
            assert isinstance(r["reason"], str) and r["reason"].strip()
        else:
            check_x(decode_row(r["row"])["x"])


def _counting(read_unit: Any) -> Any:
    def wrapper(record: dict[str, Any], domain_name: str, source_name: str) -> list[dict[str, Any]]:
        c = COUNTS[domain_name]
        c["inputs"] += 1
        try:
            records = read_unit(record, domain_name, source_name)
        except Exception:
            c["crashed"] += 1
            raise
        if any(r.get("reason") for r in records):
            c["quarantined"] += 1
        return records

    wrapper.__wrapped__ = read_unit  # type: ignore[attr-defined]
    return wrapper


def pytest_configure(config: Any) -> None:
    # before the fuzz modules import it: they bind `read_unit` from the ingest stage at import time
    import stages.ingest.__main__ as ingest

    if not hasattr(ingest.read_unit, "__wrapped__"):
        ingest.read_unit = _counting(ingest.read_unit)


def pytest_runtest_logreport(report: Any) -> None:
    if report.when == "call" and report.failed:
        parts = report.nodeid.split("/")
        domain = parts[2] if len(parts) > 3 and parts[1] == "domains" else "other"
        COUNTS[domain]["failed tests"] += 1


def pytest_terminal_summary(terminalreporter: Any) -> None:
    tr = terminalreporter
    tr.write_sep("=", f"reader fuzz ({ENV}={os.environ.get(ENV, 'unset: the tests own counts')})")
    cols = ["inputs", "quarantined", "crashed", "failed tests"]
    tr.write_line(f"{'domain':<12}" + "".join(f"{c:>14}" for c in cols))
    for domain in sorted(COUNTS):
        tr.write_line(f"{domain:<12}" + "".join(f"{COUNTS[domain][c]:>14}" for c in cols))
