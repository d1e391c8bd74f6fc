"""Property-based fuzzing of the audio readers through ingest's per-unit path.

Whatever bytes a user's audio file or manifest holds, reading a unit never raises out of ingest's
``read_unit``: every record is a kept row (a finite float32 ``[1, clip_samples]`` clip) or a
quarantine with a non-empty reason, and nothing is lost (a decodable file gives exactly its clips, a
manifest row gives its clips or its unit's quarantine). Manifest paths that resolve outside the
manifest's folder (``..``, absolute elsewhere, a symlink out) are quarantined and never read.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import domains.audio.readers as audio_readers
from domains.audio.readers import MIN_TAIL, SOURCES
from tests.fuzz import check_records, fuzz_examples, read_records

SETTINGS = settings(
    max_examples=fuzz_examples(30), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
SR = 8000
CLIP_SECONDS = 0.25
CLIP = int(SR * CLIP_SECONDS)


def _read(source: str, unit: dict) -> list[dict]:
    return read_records("audio", source, unit)


def _files_unit(path: str) -> dict:
    (unit,) = SOURCES["files"].list_units(paths=path, sample_rate=SR, clip_seconds=CLIP_SECONDS)
    return unit


def _check_records(records: list[dict]) -> None:
    def check_x(x: np.ndarray) -> None:
        assert x.shape == (1, CLIP) and x.dtype == np.float32 and np.isfinite(x).all()

    check_records(records, check_x)


def _expected_clips(n: int) -> int:
    """How many clips a decoded file of ``n`` samples (at the target rate) must give."""
    if n < CLIP:
        return 1
    return n // CLIP + (n % CLIP >= MIN_TAIL * CLIP)


samples = st.lists(
    st.one_of(
        st.floats(-1.5, 1.5, width=32),
        st.sampled_from([0.0, 1.0, -1.0, float("nan"), float("inf"), float("-inf")]),
    ),
    min_size=0,
    max_size=40,
)


@st.composite
def waveforms(draw: st.DrawFn) -> np.ndarray:
    """Short clips: a tone, silence or noise, optionally with a burst of drawn (NaN/Inf/loud) samples."""
    n = draw(st.integers(0, 3 * CLIP))
    kind = draw(st.sampled_from(["tone", "silence", "noise"]))
    t = np.arange(n) / SR
    if kind == "tone":
        y = 0.3 * np.sin(2 * np.pi * 440 * t)
    elif kind == "silence":
        y = np.zeros(n)
    else:
        y = np.random.default_rng(draw(st.integers(0, 2**16))).uniform(-0.5, 0.5, n)
    burst = np.asarray(draw(samples), dtype=np.float32)[:n]
    if burst.size:
        at = draw(st.integers(0, n - burst.size))
        y[at : at + burst.size] = burst
    return y.astype(np.float32)


@SETTINGS
@given(data=st.binary(min_size=0, max_size=600), suffix=st.sampled_from([".wav", ".flac", ".ogg"]))
def test_random_bytes_are_quarantined_not_fatal(data: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "fuzz" + suffix)
        with open(path, "wb") as f:
            f.write(data)
        records = _read("files", _files_unit(path))
    _check_records(records)


@SETTINGS
@given(
    y=waveforms(),
    fmt=st.sampled_from([("wav", "FLOAT"), ("wav", "PCM_16"), ("flac", "PCM_16")]),
    cut=st.one_of(st.none(), st.floats(0.0, 1.0)),
)
def test_valid_and_truncated_files_lose_no_clip(
    y: np.ndarray, fmt: tuple[str, str], cut: float | None
) -> None:
    ext, subtype = fmt
    if subtype != "FLOAT":  # integer PCM cannot hold NaN/Inf (libsndfile's FLAC writer fails on them)
        y = np.clip(np.nan_to_num(y, nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, f"clip.{ext}")
        sf.write(path, y, SR, subtype=subtype, format=ext.upper())
        if cut is not None:  # truncate the file at a random byte offset
            with open(path, "rb") as f:
                data = f.read()
            with open(path, "wb") as f:
                f.write(data[: int(cut * len(data))])
        records = _read("files", _files_unit(path))
    _check_records(records)
    if cut is None and not (ext == "flac" and len(y) == 0):
        # (libsndfile cannot reopen the zero-sample FLAC it writes: that unit is quarantined.)
        # an intact file decodes: exactly its clips, each kept or quarantined with a reason
        assert not any(r["id"].startswith("unit:") for r in records), records
        assert len(records) == _expected_clips(len(y))
        # a non-finite sample inside a clip quarantines it (one in a tail too short to be a clip,
        # which ``clips`` leaves out by rule, reaches no clip)
        covered = y if len(y) < CLIP else y[: _expected_clips(len(y)) * CLIP]
        if subtype == "FLOAT" and len(y) and not np.isfinite(covered).all():
            assert any(r["reason"] and r["reason"].startswith("non-finite") for r in records)


# ---------------------------------------------------------------- manifest CSV

ENTRY_KINDS = ("good", "blank", "missing", "dotdot", "abs_inside", "abs_outside", "garbage", "symlink_out")


@SETTINGS
@given(
    kinds=st.lists(st.sampled_from(ENTRY_KINDS), min_size=1, max_size=6),
    drop=st.sets(st.sampled_from(["path", "label", "speaker"]), max_size=2),
    with_split=st.booleans(),
)
def test_manifest_rows_are_all_accounted_for_and_confined(
    kinds: list[str], drop: set[str], with_split: bool
) -> None:
    with tempfile.TemporaryDirectory() as outside, tempfile.TemporaryDirectory() as d:
        root = os.path.join(d, "data")
        os.makedirs(os.path.join(root, "clips"))
        secret = os.path.join(outside, "secret.wav")
        sf.write(secret, 0.3 * np.sin(np.arange(CLIP) / 3.0), SR)
        good = os.path.join(root, "clips", "good.wav")
        sf.write(good, 0.3 * np.sin(np.arange(CLIP) / 3.0), SR)
        with open(os.path.join(root, "clips", "garbage.wav"), "wb") as f:
            f.write(b"RIFF\x10\x00\x00\x00WAVEjunk")
        os.symlink(secret, os.path.join(root, "clips", "link.wav"))
        paths = {
            "good": "clips/good.wav",
            "blank": "",
            "missing": "clips/nope.wav",
            "dotdot": os.path.relpath(secret, root),
            "abs_inside": good,
            "abs_outside": secret,
            "garbage": "clips/garbage.wav",
            "symlink_out": "clips/link.wav",
        }
        cols = [
            c for c in ("path", "label", "speaker", "split") if c not in drop and (c != "split" or with_split)
        ]
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(cols)
        for i, k in enumerate(kinds):
            rec = {
                "path": paths[k],
                "label": k,
                "speaker": f"s{i % 2}",
                "split": ["train", "", "TEST"][i % 3],
            }
            w.writerow([rec[c] for c in cols])
        manifest = os.path.join(root, "m.csv")
        with open(manifest, "w", encoding="utf-8") as f:
            f.write(buf.getvalue())
        if drop:
            with pytest.raises(ValueError, match="lacks column"):
                SOURCES["manifest"].list_units(path=manifest, sample_rate=SR, clip_seconds=CLIP_SECONDS)
            return
        units = SOURCES["manifest"].list_units(path=manifest, sample_rate=SR, clip_seconds=CLIP_SECONDS)
        assert len(units) == len(kinds)
        seen: dict[int, list[dict]] = {}
        for unit in units:
            records = _read("manifest", unit)
            _check_records(records)
            seen[unit["meta"]["manifest_row"]] = records
    assert sorted(seen) == list(range(len(kinds))), "every manifest row is accounted for"
    for i, k in enumerate(kinds):
        records = seen[i]
        if k in ("good", "abs_inside"):
            assert len(records) == 1 and records[0]["reason"] is None, records
        else:
            assert len(records) == 1 and records[0]["id"].startswith("unit:"), records
        if k in ("dotdot", "abs_outside", "symlink_out"):
            assert "path escapes the data root" in records[0]["reason"], records


def test_escaping_manifest_paths_are_never_read(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    root = os.path.join(str(tmp_path), "data")
    os.makedirs(root)
    outside = os.path.join(str(tmp_path), "outside.wav")
    sf.write(outside, 0.3 * np.sin(np.arange(CLIP) / 3.0), SR)
    inside = os.path.join(root, "in.wav")
    sf.write(inside, 0.3 * np.sin(np.arange(CLIP) / 3.0), SR)
    os.symlink(outside, os.path.join(root, "sneaky.wav"))
    os.symlink(root, os.path.join(root, "self"))  # a symlink that stays inside is fine
    manifest = os.path.join(root, "m.csv")
    with open(manifest, "w") as f:
        f.write("path,label,speaker\n")
        f.write("../../../../../../../../etc/passwd,x,s\n")
        f.write("sub/../../outside.wav,x,s\n")
        f.write(f"{outside},x,s\n")
        f.write("sneaky.wav,x,s\n")
        f.write(f"{inside},x,s\n")
        f.write("self/in.wav,x,s\n")
    opened: list[str] = []
    real_load = audio_readers.load_audio

    def spy(path: str, sample_rate: int) -> np.ndarray:
        opened.append(os.path.realpath(path))
        return real_load(path, sample_rate)

    monkeypatch.setattr(audio_readers, "load_audio", spy)
    units = SOURCES["manifest"].list_units(path=manifest, sample_rate=SR, clip_seconds=CLIP_SECONDS)
    results = [_read("manifest", u) for u in units]
    for records in results[:4]:
        assert len(records) == 1 and records[0]["row"] is None
        assert "path escapes the data root" in records[0]["reason"]
    for records in results[4:]:
        assert len(records) == 1 and records[0]["reason"] is None, records
    assert opened == [os.path.realpath(inside)] * 2, "only files inside the data root were opened"
