"""Property-based fuzzing of the offline RL readers through ingest's per-unit path.

Whatever a user's episode file holds (random bytes, missing keys, frames of the wrong rank, non-square
or out-of-range frames, NaN/Inf states/actions/rewards, mismatched lengths, non-consecutive steps, no
true state), reading a unit never raises out of ingest's ``read_unit``: every record is a kept row
(a finite float32 ``[2, S*C, H, W]`` in [0, 1]) or a quarantine with a non-empty reason, and nothing
is lost: a readable file gives one record per acted step, else its unit's quarantine.
"""

from __future__ import annotations

import os
import tempfile

import h5py
import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domains.rl.readers import SOURCES
from tests.fuzz import check_records, fuzz_examples, read_records

SETTINGS = settings(
    max_examples=fuzz_examples(30), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
STACK = 2
SIDE = 6


def _read(source: str, unit: dict) -> list[dict]:
    return read_records("rl", source, unit)


def _unit(source: str, path: str) -> dict:
    (unit,) = SOURCES[source].list_units(paths=path, stack=STACK, k=1)
    return unit


def _check_records(records: list[dict]) -> None:
    def check_x(x: np.ndarray) -> None:
        assert x.ndim == 4 and x.shape[0] == 2 and x.shape[2] == x.shape[3], x.shape
        assert x.dtype == np.float32 and np.isfinite(x).all() and x.min() >= 0.0 and x.max() <= 1.0

    check_records(records, check_x)
    unit_level = [r for r in records if r["id"].startswith("unit:")]
    assert not unit_level or len(records) == 1, "a unit is quarantined whole, or read whole"


bad_value = st.sampled_from([np.nan, np.inf, -np.inf, -3.0, 300.0])


@st.composite
def episodes(draw: st.DrawFn) -> tuple[dict[str, np.ndarray], bool]:
    """An episode dict (keys possibly renamed or missing) and whether it is well formed."""
    T = draw(st.integers(0, 5))
    extra_frame = draw(st.booleans())
    n_frames = T + extra_frame + draw(st.sampled_from([0, 0, 0, 1, -1]))
    layout = draw(st.sampled_from(["chw", "hwc", "gray", "nonsquare", "flat"]))
    shape = {
        "chw": (3, SIDE, SIDE),
        "hwc": (SIDE, SIDE, 3),
        "gray": (SIDE, SIDE),
        "nonsquare": (1, SIDE, SIDE + 2),
        "flat": (SIDE * SIDE,),
    }[layout]
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    as_float = draw(st.booleans())
    frames = rng.integers(0, 256, (max(n_frames, 0), *shape)).astype(np.uint8)
    if as_float:
        frames = (frames / 255.0).astype(np.float32)
    d = draw(st.integers(1, 4))
    n_state = max(n_frames, 0) + draw(st.sampled_from([0, 0, 0, 1]))
    ep = {
        "frames": frames,
        "state": rng.normal(size=(n_state, d)),
        "action": rng.normal(size=(T, 2)),
        "reward": rng.normal(size=T + draw(st.sampled_from([0, 0, 0, 1]))),
    }
    poisoned = None
    if draw(st.booleans()):  # a NaN/Inf/out-of-range value somewhere
        poisoned = draw(st.sampled_from(["frames", "state", "action", "reward"]))
        arr = ep[poisoned]
        value = draw(bad_value)
        if arr.size and (poisoned != "frames" or as_float):
            arr.reshape(-1)[draw(st.integers(0, arr.size - 1))] = value
        if (
            not arr.size
            or (poisoned != "frames" and np.isfinite(value))
            or (poisoned == "frames" and not as_float)
        ):
            poisoned = None  # nothing poisoned, or a finite value where any finite value is fine
    ok = (
        T > 0
        and n_frames in (T, T + 1)
        and n_state == n_frames
        and len(ep["reward"]) == T
        and layout in ("chw", "hwc", "gray")
        and poisoned is None
    )
    drop = draw(st.sampled_from([None, None, None, "state", "reward"]))
    if drop:
        del ep[drop]
        ok = False
    rename = draw(st.booleans())
    if rename:  # the accepted alternative names
        alias = {"frames": "obs", "state": "states", "action": "actions", "reward": "rewards"}
        ep = {alias[k]: v for k, v in ep.items()}
    return ep, ok


@SETTINGS
@given(data=st.binary(min_size=0, max_size=400), suffix=st.sampled_from([".npz", ".h5", ".parquet"]))
def test_random_bytes_are_quarantined_not_fatal(data: bytes, suffix: str) -> None:
    source = {".npz": "npz_episodes", ".h5": "d4rl_hdf5", ".parquet": "parquet_episodes"}[suffix]
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "fuzz" + suffix)
        with open(path, "wb") as f:
            f.write(data)
        records = _read(source, _unit(source, path))
    _check_records(records)
    assert len(records) == 1 and records[0]["row"] is None


@SETTINGS
@given(episode=episodes(), cut=st.one_of(st.none(), st.floats(0.0, 0.99)))
def test_npz_episodes_give_one_record_per_step(episode: tuple[dict, bool], cut: float | None) -> None:
    ep, ok = episode
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "ep.npz")
        np.savez(path, **ep)
        if cut is not None:
            with open(path, "rb") as f:
                data = f.read()
            with open(path, "wb") as f:
                f.write(data[: int(cut * len(data))])
        records = _read("npz_episodes", _unit("npz_episodes", path))
    _check_records(records)
    if ok and cut is None:
        T = len(ep.get("action", ep.get("actions")))
        assert len(records) == T and all(r["reason"] is None for r in records), records
    else:
        assert len(records) == 1 and records[0]["id"].startswith("unit:"), records


@SETTINGS
@given(
    lengths=st.lists(st.integers(1, 4), min_size=1, max_size=3),
    gap=st.booleans(),
    shape_mismatch=st.booleans(),
    nan_reward=st.booleans(),
)
def test_parquet_episodes_give_one_record_per_step(
    lengths: list[int], gap: bool, shape_mismatch: bool, nan_reward: bool
) -> None:
    rng = np.random.default_rng(sum(lengths))
    rows = []
    for e, n in enumerate(lengths):
        for t in range(n):
            rows.append(
                {
                    "episode": f"e{e}",
                    "t": t + (2 if gap and e == 0 and t == n - 1 and n > 1 else 0),
                    "frame": rng.integers(0, 256, SIDE * SIDE).astype(np.uint8).tolist(),
                    "frame_shape": [1, SIDE, SIDE + (1 if shape_mismatch and e == 0 else 0)],
                    "state": rng.normal(size=3).tolist(),
                    "action": [float(rng.normal())],
                    "reward": float("nan") if nan_reward and e == 0 and t == 0 else float(rng.normal()),
                }
            )
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "eps.parquet")
        pd.DataFrame(rows).to_parquet(path)
        records = _read("parquet_episodes", _unit("parquet_episodes", path))
    _check_records(records)
    broken = (gap and lengths[0] > 1) or shape_mismatch or nan_reward
    if broken:  # the whole file is one unit: quarantined with the first bad episode's reason
        assert len(records) == 1 and records[0]["id"].startswith("unit:"), records
    else:
        assert len(records) == sum(lengths) and all(r["reason"] is None for r in records), records


@SETTINGS
@given(
    n=st.integers(0, 8),
    ends=st.lists(st.booleans(), min_size=8, max_size=8),
    state_kind=st.sampled_from(["state", "qpos", "none"]),
    short=st.sampled_from([None, "actions", "rewards", "terminals"]),
    poison=st.booleans(),
)
def test_d4rl_hdf5_gives_one_record_per_step(
    n: int, ends: list[bool], state_kind: str, short: str | None, poison: bool
) -> None:
    rng = np.random.default_rng(n)
    arrays = {
        "observations": rng.integers(0, 256, (n, 1, SIDE, SIDE)).astype(np.uint8),
        "actions": rng.normal(size=(n, 2)),
        "rewards": rng.normal(size=n),
        "terminals": np.asarray(ends[:n], bool),
        "timeouts": np.zeros(n, bool),
    }
    if poison and n:
        arrays["actions"][n // 2, 0] = np.nan
    if short:
        arrays[short] = arrays[short][: max(n - 1, 0)]
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "d4rl.hdf5")
        with h5py.File(path, "w") as f:
            for k, v in arrays.items():
                f[k] = v
            if state_kind == "state":
                f["infos/state"] = rng.normal(size=(n, 3))
            elif state_kind == "qpos":
                f["infos/qpos"] = rng.normal(size=(n, 2))
                f["infos/qvel"] = rng.normal(size=(n, 2))
        records = _read("d4rl_hdf5", _unit("d4rl_hdf5", path))
    _check_records(records)
    if n and state_kind != "none" and not (short and n > 0) and not poison:
        assert len(records) == n and all(r["reason"] is None for r in records), records
    else:
        assert len(records) == 1 and records[0]["id"].startswith("unit:"), records
