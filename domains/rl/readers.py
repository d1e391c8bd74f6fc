"""RL data sources: rollouts collected in parallel (the domain's ingest), and offline episodes users hold.

Every source produces *episodes* — ``frames`` uint8 ``[T(+1), C, H, W]``, ``state`` ``[T(+1), d]``,
``action`` ``[T, a]``, ``reward`` ``[T]`` — which ``episode_rows`` turns into one row per step:

* ``x``: float32 ``[2, S*C, H, W]`` in [0, 1] — the stack of ``S`` frames ending at ``t``, ``frame_gap``
  steps apart (``t - (S-1)·gap, ..., t - gap, t``; frames before the episode start repeat the first
  frame, as CURL's FrameStack) and the stack at ``t + k`` (clamped to the last frame), so temporal
  objectives (ATC) find their positive inside the row. ``frame_gap`` (default 1: consecutive frames)
  widens the stack's time span without changing its size, for data recorded faster than its dynamics
  (on CartPole at 50 Hz it lowered the velocity R² of every encoder:
  ``bench/results/rl_steps_gap_validation.md``);
* ``group``: the episode id (never split across train and test), ``split``: per episode;
* ``meta``: ``{state, action, reward, episode, t, env, k}``.

Sources (``data.source`` in a recipe):

* ``rollouts`` — random-policy episodes of a gymnasium / dm_control environment; one unit is
  ``(env, seed, batch of episodes)`` so that ingest runs collection as parallel Ray tasks. With
  ``save_dir`` every episode is also written as an NPZ file that ``npz_episodes`` reads back.
* ``npz_episodes`` — one episode per ``.npz`` (keys above; ``obs``/``pixels``, ``states``,
  ``actions``, ``rewards`` accepted; frames channel-last or channel-first).
* ``parquet_episodes`` — one row per step with columns ``episode, t, frame`` (flattened uint8),
  ``frame_shape``, ``state``, ``action``, ``reward``.
* ``d4rl_hdf5`` — D4RL's layout (``observations, actions, rewards, terminals, timeouts``; episodes
  end at a terminal or timeout) with pixel observations and the true state in ``infos/state`` or
  ``infos/qpos`` + ``infos/qvel``.

An episode with NaN/Inf, mismatched lengths or a truncated file raises, and ingest quarantines the
unit with that reason (``rejected.jsonl``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import partial
from typing import Any

import numpy as np

from domains import io
from domains.base import Row, Source
from domains.io import expand_paths, hash_split, relative_names

Episode = dict[str, np.ndarray]


# ---------------------------------------------------------------- episodes -> rows


def check_episode(ep: Episode, where: str) -> Episode:
    """Normalise an episode's layout and raise ``ValueError`` naming what is wrong with it."""
    missing = [k for k in ("frames", "state", "action", "reward") if k not in ep]
    if missing:
        raise ValueError(f"{where}: missing array(s) {missing}")
    frames = np.asarray(ep["frames"])
    if frames.ndim == 3:  # [T, H, W] grayscale
        frames = frames[:, None]
    if frames.ndim != 4:
        raise ValueError(f"{where}: frames must be [T, C, H, W] or [T, H, W, C], got {frames.shape}")
    if frames.shape[-1] in (1, 3, 4) and frames.shape[1] not in (1, 3, 4):  # channel-last
        frames = frames.transpose(0, 3, 1, 2)
    if frames.shape[2] != frames.shape[3]:
        raise ValueError(f"{where}: frames must be square, got {frames.shape[2]}x{frames.shape[3]}")
    if len(ep["action"]) == 0:  # before the reshapes below, which cannot infer a size from nothing
        raise ValueError(f"{where}: empty episode (no actions)")
    state = np.asarray(ep["state"], dtype=np.float64)
    state = state.reshape(len(state), -1)
    action = np.asarray(ep["action"], dtype=np.float64)
    action = action.reshape(len(action), -1)
    reward = np.asarray(ep["reward"], dtype=np.float64).reshape(-1)
    T = len(action)
    if len(reward) != T:
        raise ValueError(f"{where}: mismatched lengths: {T} actions but {len(reward)} rewards")
    if len(frames) not in (T, T + 1):
        raise ValueError(f"{where}: mismatched lengths: {len(frames)} frames for {T} actions")
    if len(state) != len(frames):
        raise ValueError(f"{where}: mismatched lengths: {len(state)} states for {len(frames)} frames")
    for key, arr in (("frames", frames), ("state", state), ("action", action), ("reward", reward)):
        if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
            raise ValueError(f"{where}: non-finite values in {key} ({int((~np.isfinite(arr)).sum())})")
    if frames.dtype != np.uint8:
        if frames.min() < 0 or frames.max() > 255:
            raise ValueError(f"{where}: frame values outside [0, 255]")
        # float frames in [0, 1] are scaled to bytes; in [0, 255] they are rounded
        frames = np.round(frames * 255 if frames.max() <= 1.0 else frames).astype(np.uint8)
    return {"frames": frames, "state": state, "action": action, "reward": reward}


def _stack(frames: np.ndarray, t: int, stack: int, gap: int = 1) -> np.ndarray:
    idx = np.clip(np.arange(t - (stack - 1) * gap, t + 1, gap), 0, None)
    f = frames[idx]  # [S, C, H, W]
    return f.reshape(-1, *f.shape[2:])


def episode_rows(
    ep: Episode,
    episode_id: str,
    split: str,
    stack: int = 3,
    k: int = 1,
    extra: dict | None = None,
    frame_gap: int = 1,
) -> Iterator[Row]:
    """One row per acted step ``t`` of a checked episode (see the module docstring)."""
    if frame_gap < 1:
        raise ValueError(f"frame_gap must be >= 1, got {frame_gap}")
    frames, T = ep["frames"], len(ep["action"])
    last = len(frames) - 1
    for t in range(T):
        now, future = _stack(frames, t, stack, frame_gap), _stack(frames, min(t + k, last), stack, frame_gap)
        x = np.stack([now, future])
        yield {
            "id": f"{episode_id}/t{t:04d}",
            "x": x.astype(np.float32) / 255.0,
            "label": None,
            "split": split,
            "group": episode_id,
            "meta": {
                "state": ep["state"][t].tolist(),
                "action": ep["action"][t].tolist(),
                "reward": float(ep["reward"][t]),
                "episode": episode_id,
                "t": t,
                "k": k,
                **(extra or {}),
            },
        }


def split_of(episode_id: str, test_fraction: float) -> str:
    """Deterministic per-episode split from a hash of its id (offline data without a split)."""
    return hash_split(episode_id, test_fraction)


# ---------------------------------------------------------------- rollouts


def _rollout_units(
    env: str = "CartPole-v1",
    episodes: int = 100,
    episodes_per_unit: int = 10,
    seed: int = 0,
    size: int = 64,
    stack: int = 3,
    k: int = 1,
    max_steps: int = 500,
    action_repeat: int | None = None,
    test_every: int = 5,
    save_dir: str | None = None,
    frame_gap: int = 1,
) -> list[dict[str, Any]]:
    """Units of ``episodes_per_unit`` episodes; every ``test_every``-th episode is a test episode."""
    from domains.rl.envs import get_spec

    get_spec(env)  # unknown env: a config error now, not a quarantined unit later
    if episodes < 1 or episodes_per_unit < 1 or test_every < 2 or frame_gap < 1:
        raise ValueError("need episodes >= 1, episodes_per_unit >= 1, test_every >= 2, frame_gap >= 1")
    common = dict(env=env, seed=seed, size=size, stack=stack, k=k, max_steps=max_steps, test_every=test_every)
    common.update(action_repeat=action_repeat, save_dir=save_dir, frame_gap=frame_gap)
    return [
        {**common, "first": i, "last": min(i + episodes_per_unit, episodes)}
        for i in range(0, episodes, episodes_per_unit)
    ]


def _read_rollouts(unit: dict[str, Any]) -> Iterator[Row]:
    from domains.rl.envs import PixelEnv, rollout

    env = PixelEnv(unit["env"], unit["size"], unit.get("action_repeat"))
    try:
        yield from _unit_episodes(unit, env, rollout)
    finally:
        env.close()


def _unit_episodes(unit: dict[str, Any], env: Any, rollout: Any) -> Iterator[Row]:  # noqa: ANN401
    for i in range(unit["first"], unit["last"]):
        # one seed per (collection seed, episode): a unit re-run after a failure reproduces its episodes
        seed = int(np.random.SeedSequence([unit["seed"], i]).generate_state(1)[0])
        raw = rollout(env, seed, unit["max_steps"])
        episode_id = f"{unit['env']}/s{unit['seed']}/ep{i:05d}"
        if unit.get("save_dir"):
            os.makedirs(unit["save_dir"], exist_ok=True)
            name = episode_id.replace("/", "_").replace(":", "_") + ".npz"
            np.savez_compressed(os.path.join(unit["save_dir"], name), **raw)
        ep = check_episode(raw, episode_id)
        split = "test" if i % unit["test_every"] == unit["test_every"] - 1 else "train"
        yield from episode_rows(
            ep, episode_id, split, unit["stack"], unit["k"], {"env": unit["env"]}, unit.get("frame_gap", 1)
        )


# ---------------------------------------------------------------- offline files


NPZ_EXTENSIONS = (".npz",)
PARQUET_EXTENSIONS = (".parquet", ".pq")
HDF5_EXTENSIONS = (".hdf5", ".h5")


def _file_units(
    paths: str | list[str],
    extensions: tuple[str, ...],
    stack: int,
    k: int,
    test_fraction: float,
    frame_gap: int = 1,
) -> list[dict[str, Any]]:
    if frame_gap < 1:
        raise ValueError(f"frame_gap must be >= 1, got {frame_gap}")
    files = expand_paths(paths, extensions)
    # an episode's id starts with its file relative to the listing's folder: unique across subfolders
    return [
        {
            "path": p,
            "name": name,
            "stack": stack,
            "k": k,
            "test_fraction": test_fraction,
            "frame_gap": frame_gap,
        }
        for p, name in zip(files, relative_names(files, extensions), strict=True)
    ]


def _file_episode_rows(ep: Episode, episode_id: str, unit: dict[str, Any]) -> Iterator[Row]:
    """The rows of one checked episode of an offline file, split by its id's hash, stacked as the unit says."""
    split = split_of(episode_id, unit["test_fraction"])
    yield from episode_rows(
        ep, episode_id, split, unit["stack"], unit["k"], frame_gap=unit.get("frame_gap", 1)
    )


def _npz_units(
    paths: str | list[str], stack: int = 3, k: int = 1, test_fraction: float = 0.2, frame_gap: int = 1
) -> list[dict]:
    return _file_units(paths, NPZ_EXTENSIONS, stack, k, test_fraction, frame_gap)


def _pick(arrays: Any, *names: str) -> np.ndarray:
    for n in names:
        if n in arrays:
            return np.asarray(arrays[n])
    raise ValueError(f"missing array: none of {list(names)}")


def _read_npz(unit: dict[str, Any]) -> Iterator[Row]:
    path = unit["path"]
    with np.load(path, allow_pickle=False) as z:  # truncated/corrupt zip raises -> quarantined
        try:
            ep = {
                "frames": _pick(z, "frames", "obs", "pixels", "observations"),
                "state": _pick(z, "state", "states", "physics"),
                "action": _pick(z, "action", "actions"),
                "reward": _pick(z, "reward", "rewards"),
            }
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
    episode_id = unit.get("name") or os.path.splitext(os.path.basename(path))[0]
    yield from _file_episode_rows(check_episode(ep, path), episode_id, unit)


def _parquet_units(
    paths: str | list[str], stack: int = 3, k: int = 1, test_fraction: float = 0.2, frame_gap: int = 1
) -> list[dict]:
    return _file_units(paths, PARQUET_EXTENSIONS, stack, k, test_fraction, frame_gap)


def _read_parquet(unit: dict[str, Any]) -> Iterator[Row]:
    import pyarrow.parquet as pq

    path = unit["path"]
    table = pq.read_table(path)
    need = {"episode", "t", "frame", "frame_shape", "state", "action", "reward"}
    if not need <= set(table.column_names):
        raise ValueError(f"{path}: lacks column(s) {sorted(need - set(table.column_names))}")
    df = table.to_pandas().sort_values(["episode", "t"])
    stem = unit.get("name") or os.path.splitext(os.path.basename(path))[0]
    for ep_name, g in df.groupby("episode", sort=True):
        where = f"{path}: episode {ep_name}"
        if not (np.diff(g["t"].to_numpy()) == 1).all():
            raise ValueError(f"{where}: steps t are not consecutive")
        shapes = {tuple(s) for s in g["frame_shape"]}
        if len(shapes) != 1:
            raise ValueError(f"{where}: frames of different shapes {sorted(shapes)}")
        shape = shapes.pop()
        frames = [np.asarray(f, dtype=np.uint8) for f in g["frame"]]
        if any(f.size != int(np.prod(shape)) for f in frames):
            raise ValueError(f"{where}: a frame's size does not match frame_shape {shape}")
        ep = {
            "frames": np.stack([f.reshape(shape) for f in frames]),
            "state": np.stack([np.asarray(s, dtype=np.float64) for s in g["state"]]),
            "action": np.stack([np.atleast_1d(np.asarray(a, dtype=np.float64)) for a in g["action"]]),
            "reward": g["reward"].to_numpy(dtype=np.float64),
        }
        episode_id = f"{stem}/{ep_name}"
        yield from _file_episode_rows(check_episode(ep, where), episode_id, unit)


def _hdf5_units(
    paths: str | list[str], stack: int = 3, k: int = 1, test_fraction: float = 0.2, frame_gap: int = 1
) -> list[dict]:
    return _file_units(paths, HDF5_EXTENSIONS, stack, k, test_fraction, frame_gap)


def _read_hdf5(unit: dict[str, Any]) -> Iterator[Row]:
    import h5py

    path = unit["path"]
    with h5py.File(path, "r") as f:  # a truncated file fails to open -> quarantined
        obs = np.asarray(f["observations"])
        n = len(obs)
        if "infos/state" in f:
            state = np.asarray(f["infos/state"])
        elif "infos/qpos" in f and "infos/qvel" in f:
            state = np.concatenate([np.asarray(f["infos/qpos"]), np.asarray(f["infos/qvel"])], axis=1)
        else:
            raise ValueError(f"{path}: no true state (infos/state or infos/qpos + infos/qvel)")
        arrays = {
            "action": np.asarray(f["actions"]),
            "reward": np.asarray(f["rewards"]),
            "terminals": np.asarray(f["terminals"]).astype(bool),
            "timeouts": np.asarray(f["timeouts"]).astype(bool) if "timeouts" in f else np.zeros(n, bool),
        }
    for key, arr in {"infos/state": state, **arrays}.items():
        if len(arr) != n:
            raise ValueError(f"{path}: mismatched lengths: {n} observations but {len(arr)} {key}")
    ends = np.flatnonzero(arrays["terminals"] | arrays["timeouts"])
    if not len(ends) or ends[-1] != n - 1:
        ends = np.append(ends, n - 1)  # a trailing unfinished episode is still an episode
    stem = unit.get("name") or os.path.splitext(os.path.basename(path))[0]
    start = 0
    for e, end in enumerate(ends):
        sl = slice(start, end + 1)
        episode_id = f"{stem}/ep{e:05d}"
        ep = check_episode(
            {
                "frames": obs[sl],
                "state": state[sl],
                "action": arrays["action"][sl],
                "reward": arrays["reward"][sl],
            },
            f"{path}: episode {e}",
        )
        yield from _file_episode_rows(ep, episode_id, unit)
        start = end + 1


SOURCES: dict[str, Source] = {
    "rollouts": Source(
        "rollouts",
        _rollout_units,
        _read_rollouts,
        "random-policy episodes of a gymnasium/dm_control env, collected as parallel Ray tasks "
        "(options: env, episodes, episodes_per_unit, seed, size, stack, k, frame_gap, max_steps, "
        "action_repeat, test_every, save_dir)",
    ),
    "npz_episodes": Source(
        "npz_episodes",
        _npz_units,
        _read_npz,
        "one episode per .npz (options: paths, stack, k, frame_gap, test_fraction)",
    ),
    "parquet_episodes": Source(
        "parquet_episodes",
        _parquet_units,
        _read_parquet,
        "Parquet, one row per step (options: paths, stack, k, frame_gap, test_fraction)",
    ),
    "d4rl_hdf5": Source(
        "d4rl_hdf5",
        _hdf5_units,
        _read_hdf5,
        "D4RL-style HDF5 with pixel observations and infos/state (options: paths, stack, k, frame_gap, test_fraction)",
    ),
}


#: all rows of a source in this process (tests, notebooks): ``read_source("name", **options)``
read_source = partial(io.read_source, SOURCES, "RL")
