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


def python_files(folder: Path, recursive: bool = False) -> list[tuple[str, Path]]:
    """``(key, path)`` for every ``*.py`` in ``folder`` (and its subfolders if ``recursive``); the
    key is the path from the folder's parent (``rl/objectives.py``), so it names where a file sits
    in its package yet does not depend on where the checkout lives (the same code gives the same
    hash in every clone)."""
    found = folder.rglob("*.py") if recursive else folder.glob("*.py")
    return [(p.relative_to(folder.parent).as_posix(), p) for p in found]


def sources_sha(files: Iterable[tuple[str, Path]]) -> str:
    """SHA-256 over the files' keys and contents, in key order. Keyed by the path inside the package,
    not the file name: a file moved to another subfolder, or two same-named files whose contents
    trade places, changes the hash."""
    h = hashlib.sha256()
    for key, p in sorted(set(files)):
        h.update(key.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()
