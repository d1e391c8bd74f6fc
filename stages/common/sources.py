"""Hashes of the Python sources a stage executes, for keys that must change when the code does
(the pretraining run's name, which a run resumes from; the curation embedding cache)."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterable
from pathlib import Path

from domains import get_domain


def domain_package(domain_name: str) -> Path:
    """The folder of the package that registered ``domain_name`` (found from the domain's class, so
    a plug-in domain outside ``domains/`` is covered as well)."""
    return Path(sys.modules[type(get_domain(domain_name)).__module__].__file__ or "").parent


def sources_sha(files: Iterable[Path]) -> str:
    """SHA-256 over the files' names and contents, in path order."""
    h = hashlib.sha256()
    for p in sorted(set(files)):
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()
