"""The point-cloud plug-in as the stages see it: views, encoders, collate, fingerprint, evaluate."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from domains import get_domain, list_domains
from domains.base import EvalContext, ViewPolicy
from domains.pointcloud.views import POLICIES, crop, dropout, mask, rotate_so3, rotate_up, scale
from tests.conftest import imported_in_fresh_interpreter


@pytest.fixture(scope="module")
def pc():  # noqa: ANN201
    return get_domain("pointcloud")


@pytest.fixture(scope="module")
def cloud() -> np.ndarray:
    x = np.random.default_rng(0).normal(size=(256, 3)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1).max()


def test_registered(pc) -> None:  # noqa: ANN001
    assert "pointcloud" in list_domains() and pc.name == "pointcloud"


def test_rotations_preserve_shape_and_up_axis(cloud: np.ndarray) -> None:
    rng = np.random.default_rng(1)
    up = rotate_up(cloud, rng)
    np.testing.assert_allclose(up[:, 2], cloud[:, 2], atol=1e-6)  # about Z: heights unchanged
    np.testing.assert_allclose(np.linalg.norm(up, axis=1), np.linalg.norm(cloud, axis=1), atol=1e-5)
    so3 = rotate_so3(cloud, rng)
    np.testing.assert_allclose(np.linalg.norm(so3, axis=1), np.linalg.norm(cloud, axis=1), atol=1e-5)
    assert not np.allclose(so3[:, 2], cloud[:, 2], atol=1e-2)
    s = scale(cloud, rng, low=2.0, high=3.0)
    ratio = s / np.where(np.abs(cloud) > 1e-3, cloud, np.nan)
    per_axis = np.nanmean(ratio, axis=0)
    assert np.all((per_axis >= 2.0) & (per_axis <= 3.0)) and np.ptp(per_axis) > 0  # anisotropic


def test_point_removing_views_keep_n_and_only_use_input_points(cloud: np.ndarray) -> None:
    rng = np.random.default_rng(2)
    for f in (dropout, crop, mask):
        v = f(cloud, rng)
        assert v.shape == cloud.shape and v.dtype == np.float32
        # every output point is an input point (removed ones are refilled by copies of kept ones)
        d = np.linalg.norm(v[:, None] - cloud[None], axis=-1).min(axis=1)
        assert d.max() < 1e-6
    part = crop(cloud, rng, min_keep=0.3, max_keep=0.3)
    assert len(np.unique(part, axis=0)) == round(0.3 * len(cloud))
    # Point-CMAE pairing: two masks of the same cloud hide different patches
    a, b = mask(cloud, rng, ratio=0.6), mask(cloud, rng, ratio=0.6)
    ua, ub = {tuple(p) for p in a}, {tuple(p) for p in b}
    assert ua != ub and len(ua) < 0.6 * len(cloud)


def test_named_policies_and_unknown_names(pc, cloud: np.ndarray) -> None:  # noqa: ANN001
    rng = np.random.default_rng(3)
    for name in POLICIES:
        v = pc.augment(cloud, rng, ViewPolicy(name))
        assert v.shape == cloud.shape and np.isfinite(v).all()
        assert not np.array_equal(v, cloud)
    with pytest.raises(KeyError, match="known"):
        pc.augment(cloud, rng, ViewPolicy("nope"))
    with pytest.raises(TypeError, match="unknown parameter"):
        pc.augment(cloud, rng, ViewPolicy("custom", {"steps": [{"name": "jitter", "sigmaa": 0.1}]}))


@pytest.mark.parametrize(
    "cfg",
    [
        {"name": "pointnet", "widths": [8, 16], "out_dim": 24},
        {"name": "dgcnn", "k": 5, "widths": [8, 16], "out_dim": 24},
    ],
)
def test_encoders_are_permutation_invariant_and_train(pc, cloud: np.ndarray, cfg: dict) -> None:  # noqa: ANN001
    torch.manual_seed(0)
    enc = pc.build_encoder(cfg)
    assert enc.embedding_dim == 24
    perm = np.random.default_rng(4).permutation(len(cloud))
    batch = pc.collate([cloud, cloud[perm], cloud[:100]])
    assert batch.shape == (3, 256, 3)
    enc.eval()
    with torch.no_grad():
        z = enc(batch)
    assert z.shape == (3, 24)
    torch.testing.assert_close(z[0], z[1], atol=1e-5, rtol=1e-4)  # order of points does not matter
    enc.train()
    x = batch.clone().requires_grad_(True)
    enc(x).pow(2).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in enc.parameters() if p.requires_grad)
    with pytest.raises(KeyError, match="known"):
        pc.build_encoder({"name": "pointnet++"})


def test_pointnet_is_its_1x1_convolutions_and_batchnorm(pc, cloud: np.ndarray) -> None:  # noqa: ANN001
    """PointNet computes its shared MLP as one matrix product over all points; its parameters keep
    their Conv1d/BatchNorm1d meaning (checkpoints), in training mode (batch statistics) too."""
    torch.manual_seed(0)
    enc = pc.build_encoder({"name": "pointnet", "widths": [8, 16], "out_dim": 24})
    x = pc.collate([cloud, cloud[:200], cloud[::-1].copy()])

    def conv_layout(m: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        return m.out(m.mlp(x.transpose(1, 2))).max(dim=2).values

    twin = pc.build_encoder({"name": "pointnet", "widths": [8, 16], "out_dim": 24})
    twin.load_state_dict(enc.state_dict())
    for mode in ("train", "eval"):
        getattr(enc, mode)(), getattr(twin, mode)()
        with torch.no_grad():
            torch.testing.assert_close(enc(x), conv_layout(twin, x), atol=1e-5, rtol=1e-4)
    # BatchNorm's running statistics followed the same batches
    torch.testing.assert_close(enc.state_dict(), twin.state_dict(), atol=1e-5, rtol=1e-4)


def test_linear_svm_does_not_depend_on_numpys_global_random_state(pc) -> None:  # noqa: ANN001
    """liblinear visits samples in a random order: the same seed gives the same fit bit for bit,
    whatever numpy's global state (the grid search runs its fits on threads, in any order)."""
    from domains.pointcloud.tasks import _svm, linear_svm_accuracy

    rng = np.random.default_rng(0)
    ytr, yte = np.repeat(np.arange(3), 10), np.repeat(np.arange(3), 4)
    # fewer rows than features, as in the grid search's folds: liblinear's dual (randomised) solver
    tr = rng.normal(size=(30, 60)) + ytr[:, None]
    te = rng.normal(size=(12, 60)) + yte[:, None]
    coefs = []
    for global_seed in (0, 1, 2):
        np.random.seed(global_seed)
        coefs.append(_svm(10.0, seed=0).fit(tr, ytr)[-1].coef_)
    assert all(np.array_equal(coefs[0], c) for c in coefs[1:])
    acc, C = linear_svm_accuracy(tr, ytr, te, yte, seed=0)
    assert acc > 0.6 and C in (0.001, 0.01, 0.1, 1.0, 10.0)


def test_fingerprint_matches_copies_not_other_shapes(pc, cloud: np.ndarray) -> None:  # noqa: ANN001
    rng = np.random.default_rng(5)
    other = rng.uniform(-1, 1, size=(256, 3)).astype(np.float32) * [1, 0.2, 0.2]
    fp = pc.fingerprint([cloud, cloud[rng.permutation(256)] * 3.0, other])
    fp /= np.linalg.norm(fp, axis=1, keepdims=True)
    assert fp.shape == (3, 216)
    assert fp[0] @ fp[1] > 0.999 and fp[0] @ fp[2] < 0.9


def test_evaluate_reports_svm_knn_few_shot_per_encoder(pc) -> None:  # noqa: ANN001
    rng = np.random.default_rng(6)

    # three well-separated "shapes": clouds stretched along x, y or z
    def row(c: int, split: str, i: int) -> dict:
        x = rng.normal(size=(64, 3)).astype(np.float32) * 0.1
        x[:, c] *= 10
        return {
            "id": f"{c}/{split}/{i}",
            "x": pc.normalise(x),
            "label": "xyz"[c],
            "split": split,
            "group": None,
            "meta": {},
        }

    train = [row(c, "train", i) for c in range(3) for i in range(8)]
    test = [row(c, "test", i) for c in range(3) for i in range(4)]
    torch.manual_seed(0)
    enc = pc.build_encoder({"widths": [8], "out_dim": 16}).eval()

    def embed(e, xs):  # noqa: ANN001, ANN202
        with torch.no_grad():
            return e(pc.collate(xs)).numpy()

    def anisotropy(_e, xs):  # noqa: ANN001, ANN202 - an oracle feature: spread per axis
        return np.stack([np.abs(x).mean(axis=0) for x in xs])

    recipe = {"evaluate": {"domain": {"ways": 3, "shots": 5, "queries": 4, "episodes": 3}}}
    ctx = EvalContext(
        recipe, train, test, {"pretrained": enc, "random_init": enc}, embed, models_dir="/nonexistent"
    )
    res = pc.evaluate(ctx)
    assert set(res.metrics) == {"pretrained", "random_init"}
    m = res.metrics["pretrained"]
    assert {"linear_svm", "knn", "few_shot"} <= set(m) and m["few_shot"]["episodes"] == 3
    assert "linear SVM" in res.markdown and "3-way 5-shot" in res.markdown
    oracle = pc.evaluate(
        EvalContext(recipe, train, test, {"pretrained": enc}, anisotropy, models_dir="/nonexistent")
    )
    o = oracle.metrics["pretrained"]
    assert o["linear_svm"] == 1.0 and o["knn"] == 1.0 and o["few_shot"]["mean"] == 1.0


def test_validate_rejects_degenerate_clouds(pc) -> None:  # noqa: ANN001
    line = np.zeros((100, 3), np.float32)
    line[:, 0] = np.arange(100)
    assert "one line" in pc.validate({"x": line, "meta": {}})
    assert "coincide" in pc.validate({"x": np.ones((100, 3), np.float32), "meta": {}})
    assert "[points, 3]" in pc.validate({"x": np.zeros((100, 2), np.float32), "meta": {}})


def test_loading_the_domain_leaves_trimesh_and_sklearn_to_the_code_that_needs_them() -> None:
    """Every process that loads the domain (ingest's read tasks, each pretraining worker) imported
    trimesh and scikit-learn, which only mesh reading and evaluation use: a pretraining worker's
    imports took 3.7 s instead of 2.2 s (bench/results/import_costs.md)."""
    code = "from domains import get_domain; get_domain('pointcloud').augment"
    assert imported_in_fresh_interpreter(code, ("trimesh", "sklearn")) == []


def test_pointnet_maxavg_pool_is_max_and_mean_over_the_points(pc, cloud: np.ndarray) -> None:  # noqa: ANN001
    """``pool: maxavg`` concatenates the max pool (the default's feature, unchanged) and the mean over
    the points: twice as wide, the same parameters, still independent of the points' order."""
    torch.manual_seed(0)
    cfg = {"name": "pointnet", "widths": [8, 16], "out_dim": 24}
    plain, both = pc.build_encoder(cfg), pc.build_encoder({**cfg, "pool": "maxavg"})
    both.load_state_dict(plain.state_dict())  # same parameter names and shapes
    assert both.embedding_dim == 48
    perm = np.random.default_rng(1).permutation(len(cloud))
    x = pc.collate([cloud, cloud[perm]])
    plain.eval(), both.eval()
    with torch.no_grad():
        z, z_plain = both(x), plain(x)
        h = plain.out(plain.mlp(x.transpose(1, 2)))  # per-point features [B, 24, N]
    torch.testing.assert_close(z[:, :24], z_plain)
    torch.testing.assert_close(z[:, 24:], h.mean(dim=2), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(z[0], z[1], atol=1e-5, rtol=1e-4)
    assert not torch.allclose(z[:, 24:], z[:, :24])


def test_a_bad_pointnet_pool_names_its_key() -> None:
    from domains.pointcloud.options import ENCODER_OPTIONS

    with pytest.raises(ValueError, match="pool"):
        ENCODER_OPTIONS["pointnet"](pool="avg")
