"""Reader helpers every domain's sources share: which files a paths option names, confinement of
manifest paths to their data root, and the deterministic split of rows that carry none.

A *paths option* (``paths``, ``images``, ``labels``...) is one string or a list of them; each is a
file, a glob (``**`` recursive) or a directory. A directory means every file under it (recursively)
with one of the source's extensions, so a user can point a recipe at a folder of their data. A file
named explicitly or matched by a glob must have one of those extensions. Every listing problem is a
:class:`SourceError` naming the option and the file: a recipe mistake, reported as one line before
any work starts (``configure`` lists the units), never a unit quarantined minutes later.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

SPLITS = ("train", "test")
#: a ``_TRAIN``/``-test``/``.train`` marker in a file name (``GunPoint_TEST.ts``, ``chair_train_3.off``)
SPLIT_MARKER = re.compile(r"(?:^|[_\-.])(train|test)(?=[_\-.\d]|$)", re.IGNORECASE)


class SourceError(ValueError):
    """A source's options name no usable data; ``key`` is the option (``paths``) the message is about.

    Raised while *listing* units (cheap, before any work), never while reading one: a unit that
    cannot be read is quarantined by ingest instead.
    """

    def __init__(self, key: str | None, message: str) -> None:
        super().__init__(message)
        self.key = key


class NoFilesError(SourceError, FileNotFoundError):
    """A paths option matches no file (a typo in the recipe, or data not there yet)."""


def as_list(paths: str | Sequence[str]) -> list[str]:
    return [paths] if isinstance(paths, str) else list(paths)


def has_extension(path: str, extensions: Sequence[str]) -> bool:
    """Case-insensitive; compound extensions (``.nii.gz``, ``.csv.gz``) included."""
    return path.lower().endswith(tuple(e.lower() for e in extensions))


def _expected(extensions: Sequence[str]) -> str:
    return ", ".join(extensions)


def files_under(root: str, extensions: Sequence[str], key: str | None = "paths") -> list[str]:
    """Every file under directory ``root`` (recursively) with one of ``extensions``: absolute, sorted.

    Hidden files and folders (``.DS_Store``, ``.git``) are skipped; other files are left out silently
    (a data folder may hold a README or a licence).
    """
    root = os.path.abspath(os.path.expanduser(root))
    hits = []
    for folder, dirs, files in os.walk(root, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        hits += [
            os.path.join(folder, f) for f in files if not f.startswith(".") and has_extension(f, extensions)
        ]
    if not hits:
        raise NoFilesError(key, f"no file with extension {_expected(extensions)} under {root!r}")
    return sorted(hits)


def expand_paths(paths: str | Sequence[str], extensions: Sequence[str], key: str = "paths") -> list[str]:
    """Files named by a paths option (files, globs, directories): absolute, sorted per entry, unique.

    Absolute, because units are read by Ray tasks whose working directory is the cluster's.
    """
    out: list[str] = []
    for p in as_list(paths):
        p = os.path.expanduser(p)
        hits: list[str] = []
        for match in sorted(glob.glob(p, recursive=True)):
            if os.path.isdir(match):
                hits += files_under(match, extensions, key)
            elif os.path.isfile(match):
                if not has_extension(match, extensions):
                    raise SourceError(
                        key,
                        f"{os.path.abspath(match)!r}: unsupported extension (expected {_expected(extensions)})",
                    )
                hits.append(os.path.abspath(match))
        if not hits:
            # A pattern matching nothing is almost always a typo in the recipe: fail loudly.
            raise NoFilesError(
                key, f"no file matches {p!r} (expected {_expected(extensions)} files or a folder)"
            )
        seen = set(out)
        out += [h for h in dict.fromkeys(hits) if h not in seen]
    return out


def folders_with_files(paths: str | Sequence[str], key: str) -> list[str]:
    """Folders named by a paths option (folders or globs) that directly hold files, each one unit (a
    DICOM series): a folder holding files is itself one; a folder of folders means every such folder
    under it. Absolute, sorted, unique."""
    out: list[str] = []
    for p in as_list(paths):
        hits = []
        for match in sorted(glob.glob(os.path.expanduser(p), recursive=True)):
            if os.path.isdir(match):
                for folder, dirs, files in os.walk(os.path.abspath(match), followlinks=True):
                    dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                    hits += [folder] if any(not f.startswith(".") for f in files) else []
        if not hits:
            raise NoFilesError(key, f"no folder holding files matches {p!r}")
        seen = set(out)
        out += [h for h in hits if h not in seen]
    return out


def relative_names(paths: Sequence[str], extensions: Sequence[str] | None = None) -> list[str]:
    """Each path's name relative to the folder all of them share, without its extension (see
    :func:`stem`), ``/``-separated: unique ids for files of one listing, so ``sub-01/t1.nii.gz`` and
    ``sub-02/t1.nii.gz`` do not both become ``t1`` (files of one folder keep their plain stems)."""
    if not paths:
        return []
    root = os.path.commonpath([os.path.dirname(os.path.abspath(p.rstrip("/"))) for p in paths])
    out = []
    for p in paths:
        rel = os.path.relpath(os.path.abspath(p.rstrip("/")), root)
        out.append(os.path.join(os.path.dirname(rel), stem(rel, extensions)).replace(os.sep, "/"))
    return out


def confine(path: str, root: str, error: type[Exception] = ValueError) -> str:
    """``path`` if it resolves (``..`` and symlinks followed) inside ``root``; else ``error``, so that
    ingest quarantines the unit instead of reading a file from outside the data root."""
    real, real_root = os.path.realpath(path), os.path.realpath(root)
    if os.path.commonpath([real, real_root]) != real_root:
        raise error(f"path escapes the data root {root!r}: {path!r} resolves to {real!r}")
    return path


def hash_split(key: str, test_fraction: float, seed: int = 0) -> str:
    """``"test"`` for a ``test_fraction`` of keys, by a seeded hash of the key (a file stem, speaker,
    episode): a whole group lands on one side, and stays there as files are added."""
    h = int(hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "test" if h < test_fraction else "train"


def split_from_name(path: str) -> str | None:
    """``"train"``/``"test"`` from a marker in the file name (``GunPoint_TEST.ts``), else ``None``."""
    m = SPLIT_MARKER.search(os.path.basename(path))
    return m.group(1).lower() if m else None


def split_from_path(path: str) -> str | None:
    """The file name's marker, else a parent folder named exactly ``train``/``test`` (ModelNet's
    ``<class>/<train|test>/<file>``); a folder such as ``test_data`` does not count."""
    split = split_from_name(path)
    if split:
        return split
    parents = os.path.dirname(os.path.abspath(path)).split(os.sep)
    return next((p.lower() for p in reversed(parents) if p.lower() in SPLITS), None)


def stem(path: str, extensions: Sequence[str] | None = None) -> str:
    """The file (or folder) name without its extension: one of ``extensions`` (compound ones such as
    ``.nii.gz`` cut whole; a name with none of them is kept whole, e.g. a DICOM folder ``1.2.840``),
    or with ``None`` whatever follows the last dot."""
    name = os.path.basename(path.rstrip("/"))
    if extensions is None:
        return os.path.splitext(name)[0]
    for ext in extensions:
        if name.lower().endswith(ext.lower()):
            return name[: -len(ext)]
    return name


def read_source(sources: Mapping[str, Any], what: str, name: str, /, **options: Any) -> Iterator[dict]:
    """All rows of source ``name`` of ``sources`` in this process (tests, notebooks): list its units,
    then read each in turn. A domain binds the first two (``partial(read_source, SOURCES, "audio")``);
    ``name`` is positional-only so that a source option called ``name`` passes through ``options``."""
    if name not in sources:
        raise KeyError(f"unknown {what} source {name!r}; known: {', '.join(sources)}")
    src = sources[name]
    for unit in src.list_units(**options):
        yield from src.read_unit(unit)
