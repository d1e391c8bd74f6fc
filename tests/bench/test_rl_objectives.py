"""bench/rl_objectives.py: only training episodes are read and split by episode; every objective
trains and is probed; per-seed R² lands in the JSON with its mean and std."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from bench import rl_objectives
from domains.rl.readers import _read_rollouts, _rollout_units
from stages.common.rows import rows_to_table


def _data(tmp_path: Path) -> Path:
    units = _rollout_units(episodes=10, episodes_per_unit=10, max_steps=20, test_every=5)
    rows = list(_read_rollouts(units[0]))
    out = tmp_path / "curated"
    out.mkdir()
    pq.write_table(rows_to_table(rows), out / "part-00000.parquet")
    return out


def test_reads_training_episodes_only(tmp_path: Path) -> None:
    x, y, g = rl_objectives.load_training_rows(_data(tmp_path))
    assert x.shape[1:] == (2, 3, 64, 64) and y.shape == (len(x), 4)
    assert len(np.unique(g)) == 8  # episodes 4 and 9 of 10 are test episodes (test_every=5)
    assert not any(e.endswith(("ep00004", "ep00009")) for e in g)


def test_writes_r2_per_objective_and_seed(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("BENCH_FORCE", "1")
    out, data = tmp_path / "objectives.json", _data(tmp_path)
    n_train = len(rl_objectives.load_training_rows(data)[0])
    argv = ["--data", str(data), "--objectives", "atc,ntxent", "--seeds", "0,1"]
    rl_objectives.main([*argv, "--steps", "2", "--batch", "8", "--out", str(out)])
    res = json.loads(out.read_text())
    assert res["val_episodes"] == 1 and res["fit_rows"] + res["val_rows"] == n_train
    for name in ("atc", "ntxent"):
        r2 = res["objectives"][name]["r2"]
        assert set(r2) == set(rl_objectives.STATE)
        assert len(r2["theta"]["seeds"]) == 2
        assert np.isclose(r2["theta"]["mean"], np.mean(r2["theta"]["seeds"]), atol=1e-4)
        assert res["objectives"][name]["runs"][0]["loss_curve"][-1][0] == 1  # the last step logged
    assert "| atc |" in out.with_suffix(".md").read_text()


def test_reversed_stack_is_the_same_frames_backwards() -> None:
    x = np.arange(3 * 2 * 4 * 4, dtype=np.float32).reshape(6, 4, 4)  # 3 frames of 2 channels
    r = rl_objectives.reverse_stack(x, stack=3)
    assert (
        np.array_equal(r[0:2], x[4:6]) and np.array_equal(r[2:4], x[2:4]) and np.array_equal(r[4:6], x[0:2])
    )
    assert np.array_equal(rl_objectives.reverse_stack(r, stack=3), x)


def test_extra_negatives_extend_ntxent() -> None:
    import torch

    from stages.common.losses.registry import build_loss

    z1, z2 = torch.randn(8, 16, generator=torch.Generator().manual_seed(0)).chunk(2)
    plain = rl_objectives.ntxent_with_negatives(z1, z2, torch.zeros(0, 16), 0.1)
    assert torch.isclose(plain, build_loss("ntxent", 0.1)(z1, z2), atol=1e-5)
    # a negative equal to each positive can only raise the loss
    assert rl_objectives.ntxent_with_negatives(z1, z2, z2, 0.1) > plain


def test_reversed_negatives_objective_trains(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("BENCH_FORCE", "1")
    out = tmp_path / "objectives.json"
    argv = ["--data", str(_data(tmp_path)), "--objectives", "ntxent_reverse", "--seeds", "0"]
    rl_objectives.main([*argv, "--steps", "2", "--batch", "8", "--out", str(out)])
    assert set(json.loads(out.read_text())["objectives"]["ntxent_reverse"]["r2"]) == set(rl_objectives.STATE)


def test_actions_line_up_with_the_training_rows(tmp_path: Path) -> None:
    data = _data(tmp_path)
    x, _, g = rl_objectives.load_training_rows(data)
    actions = rl_objectives.load_actions(data)
    assert actions.shape == (len(x), 1) and set(np.unique(actions)) <= {0.0, 1.0}
    tab = pq.read_table(next(data.rglob("*.parquet")))
    train = [
        json.loads(m)
        for m, s in zip(tab["meta"].to_pylist(), tab["split"].to_pylist(), strict=True)
        if s == "train"
    ]
    assert [m["action"] for m in train] == actions.tolist() and [m["episode"] for m in train] == list(g)


def test_taco_hard_negative_is_the_rows_own_current_stack() -> None:
    import torch

    from stages.common.encoders import build_encoder

    torch.manual_seed(0)
    encoder = build_encoder("rl", {"name": "pixel_cnn", "num_layers": 2, "num_filters": 8, "feature_dim": 16})
    rows = [np.random.default_rng(i).random((2, 3, 64, 64), dtype=np.float32) for i in range(4)]
    losses = {}
    for hard in (False, True):
        torch.manual_seed(1)
        obj = rl_objectives.TACO(encoder, action_dim=1, hard=hard)
        obj.set_actions(np.array([[0.0], [1.0], [0.0], [1.0]], dtype=np.float32))
        anchors, _, keys = obj.make_views(rows, np.random.default_rng(0))
        assert len(keys) == (8 if hard else 4)  # o_{t+1} of each row, then its o_t
        losses[hard] = obj.loss(encoder(torch.as_tensor(np.stack(anchors))), None, 0, keys)
        losses[hard].backward()
        assert all(p.grad is not None for p in obj.action.parameters())  # the action is used
    assert losses[True] > losses[False]  # one more negative per anchor can only add to the loss


def test_taco_objectives_train(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("BENCH_FORCE", "1")
    out = tmp_path / "objectives.json"
    argv = ["--data", str(_data(tmp_path)), "--objectives", "taco,taco_hard", "--seeds", "0"]
    rl_objectives.main([*argv, "--steps", "2", "--batch", "8", "--out", str(out)])
    assert set(json.loads(out.read_text())["objectives"]) == {"taco", "taco_hard"}


def test_supervised_reference_is_probed_like_the_objectives(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("BENCH_FORCE", "1")
    out = tmp_path / "objectives.json"
    argv = ["--data", str(_data(tmp_path)), "--objectives", "supervised,ntxent", "--seeds", "0"]
    rl_objectives.main([*argv, "--steps", "2", "--batch", "8", "--supervised-epochs", "1", "--out", str(out)])
    res = json.loads(out.read_text())["objectives"]
    assert set(res) == {"supervised", "ntxent"} and set(res["supervised"]["r2"]) == set(rl_objectives.STATE)

    def no_nan(token: str) -> None:
        raise AssertionError(f"{token} in the result: not standard JSON")

    json.loads(out.read_text(), parse_constant=no_nan)
    assert res["supervised"]["final_loss"] is None and isinstance(res["ntxent"]["final_loss"], float)
    assert "| supervised |" in out.with_suffix(".md").read_text()


def test_weight_average_probes_the_mean_of_the_initial_and_trained_weights(
    tmp_path: Path, monkeypatch
) -> None:  # noqa: ANN001
    """--weight-average swa: the probe reads the uniform average of the encoder's weights (the initial
    ones and one per step), not the last weights; the result is keyed ``<objective>+swa``."""
    import torch

    from stages.common.encoders import build_encoder

    monkeypatch.setenv("BENCH_FORCE", "1")
    made, probed = [], []
    real_average, real_probe = rl_objectives.weight_average, rl_objectives.probe_encoder

    def recording_average(module):  # noqa: ANN001, ANN202
        made.append(module)
        return real_average(module)

    def recording_probe(encoder, *a, **kw):  # noqa: ANN001, ANN202
        probed.append(encoder)
        return real_probe(encoder, *a, **kw)

    monkeypatch.setattr(rl_objectives, "weight_average", recording_average)
    monkeypatch.setattr(rl_objectives, "probe_encoder", recording_probe)
    out = tmp_path / "objectives.json"
    argv = [
        "--data",
        str(_data(tmp_path)),
        "--objectives",
        "ntxent",
        "--seeds",
        "0",
        "--weight-average",
        "swa",
    ]
    rl_objectives.main([*argv, "--steps", "1", "--batch", "8", "--out", str(out)])
    assert set(json.loads(out.read_text())["objectives"]) == {"ntxent+swa"}

    (live,), (exported,) = made, probed
    torch.manual_seed(0)
    initial = build_encoder("rl", {**rl_objectives.ENCODER, "image_size": 64})
    moved = False
    for (name, w_exp), w_live, w_init in zip(
        exported.state_dict().items(), live.state_dict().values(), initial.state_dict().values(), strict=True
    ):
        if not w_exp.is_floating_point():
            continue
        torch.testing.assert_close(w_exp, (w_init + w_live) / 2, msg=name)
        moved |= not torch.equal(w_live, w_init)
    assert moved, "one step changed no weight: the test cannot tell the average from either end"


def test_feature_dim_sets_every_arms_embedding_width(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """--feature-dim widens the encoder of the objectives and of the supervised reference alike (the
    width is the recipe's encoder, so a comparison across widths must move every arm), and the
    result records it."""
    monkeypatch.setenv("BENCH_FORCE", "1")
    widths = []
    real_probe = rl_objectives.probe_encoder

    def recording_probe(encoder, *a, **kw):  # noqa: ANN001, ANN202
        widths.append(encoder.embedding_dim)
        return real_probe(encoder, *a, **kw)

    monkeypatch.setattr(rl_objectives, "probe_encoder", recording_probe)
    out = tmp_path / "objectives.json"
    argv = ["--data", str(_data(tmp_path)), "--objectives", "ntxent,supervised", "--seeds", "0"]
    opts = ["--steps", "1", "--batch", "8", "--supervised-epochs", "1", "--feature-dim", "24"]
    rl_objectives.main([*argv, *opts, "--out", str(out)])
    assert widths == [24, 24]
    assert json.loads(out.read_text())["feature_dim"] == 24
    assert "24-d embedding" in out.with_suffix(".md").read_text()
