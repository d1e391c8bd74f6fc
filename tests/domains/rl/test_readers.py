"""RL sources: rollouts → rows with temporal pairs, offline episode formats, and bad-input quarantine."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from domains.rl.readers import SOURCES, check_episode, episode_rows, read_source
from stages.ingest.__main__ import read_unit


@pytest.fixture(scope="module")
def cartpole(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict], str]:
    save = tmp_path_factory.mktemp("episodes")
    rows = list(
        read_source(
            "rollouts",
            env="CartPole-v1",
            episodes=4,
            episodes_per_unit=2,
            size=32,
            test_every=2,
            save_dir=str(save),
        )
    )
    return rows, str(save)


def test_rollout_rows_hold_stacks_state_and_episode_groups(cartpole: tuple[list[dict], str]) -> None:
    rows, _ = cartpole
    assert {r["x"].shape for r in rows} == {(2, 3, 32, 32)}
    assert all(r["x"].dtype == np.float32 and r["x"].min() >= 0.0 and r["x"].max() <= 1.0 for r in rows)
    assert all(len(r["meta"]["state"]) == 4 for r in rows)  # CartPole: x, x_dot, theta, theta_dot
    # split is per episode: no episode in both splits, and both splits exist (every 2nd episode is test)
    split_of = {}
    for r in rows:
        assert split_of.setdefault(r["group"], r["split"]) == r["split"]
    assert set(split_of.values()) == {"train", "test"}
    # the state really is the simulator's: CartPole's x advances by tau * x_dot each step
    ep = [r for r in rows if r["group"] == rows[0]["group"]]
    s = np.array([r["meta"]["state"] for r in ep])
    np.testing.assert_allclose(s[1:, 0], s[:-1, 0] + 0.02 * s[:-1, 1], atol=1e-9)


def test_future_stack_is_the_stack_k_steps_later(cartpole: tuple[list[dict], str]) -> None:
    rows, _ = cartpole
    ep = [r for r in rows if r["group"] == rows[0]["group"]]
    for a, b in zip(ep[:-1], ep[1:], strict=True):  # k = 1
        np.testing.assert_array_equal(a["x"][1], b["x"][0])
    # at t = 0 the stack repeats the first frame (CURL's FrameStack after reset)
    first = ep[0]["x"][0]
    np.testing.assert_array_equal(first[0], first[2])
    # frames move: consecutive current stacks differ
    assert not np.array_equal(ep[0]["x"][0], ep[5]["x"][0])


def test_saved_npz_episodes_read_back_identically(cartpole: tuple[list[dict], str]) -> None:
    rows, save = cartpole
    again = list(read_source("npz_episodes", paths=save, test_fraction=0.0))
    assert len(again) == len(rows)
    by_t = {(r["meta"]["t"], tuple(r["meta"]["state"])): r["x"] for r in again}
    for r in rows:
        np.testing.assert_array_equal(by_t[(r["meta"]["t"], tuple(r["meta"]["state"]))], r["x"])


def _episode(T: int = 12, side: int = 16, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "frames": rng.integers(0, 256, size=(T + 1, side, side, 3), dtype=np.uint8),  # channel-last
        "state": rng.normal(size=(T + 1, 5)),
        "action": rng.normal(size=(T, 2)),
        "reward": rng.normal(size=T),
    }


def test_channel_last_rgb_frames_stack_to_channel_planes() -> None:
    ep = check_episode(_episode(), "x")
    rows = list(episode_rows(ep, "e", "train", stack=3, k=2))
    assert rows[0]["x"].shape == (2, 9, 16, 16)  # 3 RGB frames -> 9 planes
    np.testing.assert_array_equal(rows[0]["x"][1], rows[2]["x"][0])  # k = 2


def test_frame_gap_stacks_frames_gap_steps_apart() -> None:
    ep = check_episode(_episode(T=12), "x")
    frames = ep["frames"].astype(np.float32) / 255.0  # [T+1, 3, 16, 16]
    rows = list(episode_rows(ep, "e", "train", stack=3, k=1, frame_gap=3))
    # at t = 7 the stack is frames 1, 4, 7 (RGB planes in that order); the future stack ends at 8
    np.testing.assert_array_equal(rows[7]["x"][0], frames[[1, 4, 7]].reshape(9, 16, 16))
    np.testing.assert_array_equal(rows[7]["x"][1], frames[[2, 5, 8]].reshape(9, 16, 16))
    # before the episode start the first frame repeats, as with consecutive frames
    np.testing.assert_array_equal(rows[4]["x"][0], frames[[0, 1, 4]].reshape(9, 16, 16))
    # the default is consecutive frames, and the state of the row is still the state at t
    np.testing.assert_array_equal(
        list(episode_rows(ep, "e", "train"))[7]["x"][0], frames[[5, 6, 7]].reshape(9, 16, 16)
    )
    assert rows[7]["meta"]["state"] == ep["state"][7].tolist()


def test_frame_gap_reaches_the_offline_readers(cartpole: tuple[list[dict], str]) -> None:
    rows, save = cartpole
    gapped = list(read_source("npz_episodes", paths=save, test_fraction=0.0, frame_gap=2))
    frame = {(r["meta"]["episode"].rsplit("/", 1)[-1], r["meta"]["t"]): r["x"][0][-1] for r in rows}
    r = next(r for r in gapped if r["meta"]["t"] == 6)
    ep = r["group"].rsplit("_", 1)[-1]  # the npz name ends with the rollout's episode number
    np.testing.assert_array_equal(r["x"][0], np.stack([frame[(ep, t)] for t in (2, 4, 6)]))


def test_frame_gap_below_one_is_refused_naming_it(tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match="frame_gap"):
        SOURCES["rollouts"].list_units(frame_gap=0)
    with pytest.raises(ValueError, match="frame_gap"):
        SOURCES["npz_episodes"].list_units(paths=str(tmp_path), frame_gap=0)


def _quarantine(source: str, path: str) -> str | None:
    unit = SOURCES[source].list_units(paths=path)[0]
    out = read_unit({"unit": json.dumps(unit)}, "rl", source)
    return out[0]["reason"] if out[0]["reason"] else None


def test_parquet_episodes_one_row_per_step(tmp_path) -> None:  # noqa: ANN001
    ep = _episode(T=6)
    frames = ep["frames"][:6]  # Parquet holds one observation per acted step
    table = pa.table(
        {
            "episode": ["a"] * 6,
            "t": list(range(6)),
            "frame": [f.reshape(-1) for f in frames],
            "frame_shape": [list(frames.shape[1:])] * 6,
            "state": list(ep["state"][:6]),
            "action": list(ep["action"]),
            "reward": ep["reward"],
        }
    )
    pq.write_table(table, tmp_path / "eps.parquet")
    rows = list(read_source("parquet_episodes", paths=str(tmp_path / "eps.parquet")))
    assert len(rows) == 6 and rows[-1]["x"].shape == (2, 9, 16, 16)
    np.testing.assert_array_equal(rows[-1]["x"][1], rows[-1]["x"][0])  # future clamped at the end
    assert rows[2]["meta"]["reward"] == pytest.approx(ep["reward"][2])


def test_d4rl_hdf5_splits_episodes_at_terminals_and_timeouts(tmp_path) -> None:  # noqa: ANN001
    n, rng = 20, np.random.default_rng(1)
    with h5py.File(tmp_path / "d.hdf5", "w") as f:
        f["observations"] = rng.integers(0, 256, size=(n, 1, 16, 16), dtype=np.uint8)
        f["actions"] = rng.normal(size=(n, 1))
        f["rewards"] = rng.normal(size=n)
        f["terminals"] = np.isin(np.arange(n), [6])
        f["timeouts"] = np.isin(np.arange(n), [13])
        f["infos/qpos"] = rng.normal(size=(n, 2))
        f["infos/qvel"] = rng.normal(size=(n, 2))
    rows = list(read_source("d4rl_hdf5", paths=str(tmp_path / "d.hdf5")))
    sizes = {}
    for r in rows:
        sizes[r["group"]] = sizes.get(r["group"], 0) + 1
    assert sorted(sizes.values()) == [6, 7, 7] and len(rows[0]["meta"]["state"]) == 4

    with h5py.File(tmp_path / "bad.hdf5", "w") as f:
        f["observations"] = np.zeros((n, 1, 16, 16), np.uint8)
        f["actions"] = np.zeros((n - 1, 1))
        f["rewards"] = np.zeros(n)
        f["terminals"] = np.zeros(n, bool)
        f["infos/state"] = np.zeros((n, 3))
    assert "mismatched lengths" in _quarantine("d4rl_hdf5", str(tmp_path / "bad.hdf5"))
