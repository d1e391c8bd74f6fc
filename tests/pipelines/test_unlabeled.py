"""Your own unlabeled files, end to end, in every domain: ``python -m pipelines.run`` on a folder of
files made here (no label, no split) exits 0, the report says there are no labels and shows what
needs none, and every output dvc.yaml declares exists. Plus a partly labelled table.

Each run is tiny (a dozen rows, one or two epochs, narrow encoders) and uses the session's Ray.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.e2e import TinyRun

pytestmark = pytest.mark.e2e

#: small everywhere: one probe seed, few fine-tuning epochs, a small diagnostic sample
TINY = {
    "pretrain": {
        "epochs": 1,
        "batch_size": 4,
        "checkpoint_every": 1,
        "head": {"hidden_dim": 16, "out_dim": 8},
    },
    "finetune": {"epochs": 2, "fractions": [1.0], "patience": 1, "modes": ["linear"]},
    "evaluate": {"embedding_map_points": 20, "diagnostic_rows": 64, "probes": ["linear", "knn"]},
    "ray": {"num_workers": 1},
}


def _run(run_tiny: Callable[..., TinyRun], recipe: dict) -> TinyRun:
    """``recipe`` at the tiny scale above (run_tiny checks the exit code and DVC's declared outputs)."""
    return run_tiny(recipe, tiny=TINY, timeout=300)


def _assert_label_free_report(run: TinyRun, n_rows: int) -> None:
    assert "Representation without labels" in run.report and "Nearest neighbours" in run.report
    rep = run.evaluation["representation"]
    assert rep["n_rows"] == n_rows and rep["pretrained"]["rankme"] >= 1.0
    assert rep["retrieval"] and rep["retrieval"][0]["neighbours"]


def _assert_no_labels(run: TinyRun) -> None:
    assert "no labels:" in run.report and run.evaluation["no_labels"].startswith("no labels:")
    assert "pretrained" not in run.evaluation  # no probe ran
    assert "no labels" in run.metrics("finetune")["skipped"]


def _series(n: int, length: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, length)
    freq = 1 + 3 * (np.arange(n) % 2)
    return np.sin(2 * np.pi * freq[:, None] * t) + 0.1 * rng.normal(size=(n, length))


def test_timeseries_table_without_label_or_split(run_tiny: Callable[..., TinyRun], tmp_path: Path) -> None:
    import pandas as pd

    path = tmp_path / "series.csv"
    pd.DataFrame(_series(16), columns=[f"t{i}" for i in range(32)]).to_csv(path, index=False)
    recipe = {
        "name": "unlabeled-timeseries",
        "domain": "timeseries",
        "description": "unlabeled series from a CSV table",
        "data": {"source": "table", "options": {"paths": str(path)}},
        "encoder": {"name": "ts2vec_cnn", "hidden_dim": 8, "out_dim": 16, "depth": 2},
    }
    run = _run(run_tiny, recipe)
    _assert_no_labels(run)
    _assert_label_free_report(run, 16)
    assert run.evaluation["representation"]["sample"].startswith(
        "training rows"
    )  # no test row to sample from


def test_timeseries_table_with_labels_on_half_the_rows(
    run_tiny: Callable[..., TinyRun], tmp_path: Path
) -> None:
    import pandas as pd

    n = 32
    df = pd.DataFrame(_series(n), columns=[f"t{i}" for i in range(32)])
    df.insert(0, "label", [("ab"[i % 2] if i % 4 < 2 else None) for i in range(n)])
    path = tmp_path / "half.csv"
    df.to_csv(path, index=False)
    recipe = {
        "name": "partly-labelled-timeseries",
        "domain": "timeseries",
        "description": "series with labels on half the rows and no split",
        "data": {"source": "table", "options": {"paths": str(path)}},
        "encoder": {"name": "ts2vec_cnn", "hidden_dim": 8, "out_dim": 16, "depth": 2},
    }
    run = _run(run_tiny, recipe)
    ev, report = run.evaluation, run.report
    assert "no_labels" not in ev
    assert ev["labels"]["n_labelled"] == 16 and ev["labels"]["test_split"] == "carved by group"
    assert ev["n_train"] + ev["n_test"] == 16 and ev["n_test"] >= 2
    assert 0.0 <= ev["pretrained"]["linear"] <= 1.0
    assert (
        "16 of 32 curated rows carry a label" in report and "carved from the labelled rows by group" in report
    )
    runs = run.metrics("finetune")["runs"]
    assert all(r["n_fit"] + r["n_val"] == ev["n_train"] for r in runs)


def test_audio_folder_of_wav_files(run_tiny: Callable[..., TinyRun], tmp_path: Path) -> None:
    import soundfile as sf

    folder = tmp_path / "wavs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    t = np.arange(8000) / 8000
    for i in range(12):
        wave = 0.3 * np.sin(2 * np.pi * (200 + 150 * (i % 3)) * t) + 0.02 * rng.normal(size=t.size)
        sf.write(folder / f"clip{i:02d}.wav", wave.astype(np.float32), 8000)
    recipe = {
        "name": "unlabeled-audio",
        "domain": "audio",
        "description": "a folder of unlabeled WAV files",
        "data": {"source": "files", "options": {"paths": str(folder), "sample_rate": 8000}},
        "encoder": {
            "name": "byola_cnn",
            "sample_rate": 8000,
            "n_mels": 32,
            "n_fft": 256,
            "hop_length": 128,
            "channels": 8,
            "hidden_dim": 32,
            "out_dim": 16,
        },
        "views": {"policy": "light"},
    }
    # a tiny run is too short for `auto` to stream its views: this one streams them anyway, so the
    # stage's streamed path (Ray Data's view actors into Ray Train) runs end to end in CI
    tiny = {**TINY, "pretrain": {**TINY["pretrain"], "online_views": "stream"}}
    run = run_tiny(recipe, tiny=tiny, timeout=300)
    assert "pretrain: views streamed from Ray Data: 1 view worker(s)" in run.log
    assert run.metrics("pretrain")["view_fraction"] < 0.01  # the trainer made no view (decoding aside)
    _assert_no_labels(run)
    _assert_label_free_report(run, 12)


def test_medical_nifti_volumes(run_tiny: Callable[..., TinyRun], tmp_path: Path) -> None:
    import nibabel as nib

    folder = tmp_path / "nifti"
    folder.mkdir()
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, 24)] * 3, indexing="ij"))
    for i in range(3):
        vol = (np.linalg.norm(grid, axis=0) < 0.5 + 0.1 * i) * 100.0 + rng.normal(size=grid.shape[1:])
        nib.save(nib.Nifti1Image(vol.astype(np.float32), np.eye(4)), folder / f"scan{i}.nii.gz")
    recipe = {
        "name": "unlabeled-medical",
        "domain": "medical",
        "description": "unlabeled NIfTI volumes",
        "data": {
            "source": "nifti",
            "options": {"images": str(folder / "*.nii.gz"), "patch_size": 16, "patches_per_volume": 4},
        },
        "encoder": {"name": "resnet", "widths": [8, 8, 16, 16], "layers": [1, 1, 1, 1]},
    }
    run = _run(run_tiny, recipe)
    _assert_no_labels(run)
    _assert_label_free_report(run, 12)


def test_pointcloud_folder_of_meshes(run_tiny: Callable[..., TinyRun], tmp_path: Path) -> None:
    import trimesh

    folder = tmp_path / "meshes"
    folder.mkdir()
    shapes = [
        trimesh.creation.box(extents=(1, 2, 3)),
        trimesh.creation.icosphere(subdivisions=2),
        trimesh.creation.cylinder(radius=0.5, height=2),
        trimesh.creation.capsule(height=1.5, radius=0.4),
        trimesh.creation.cone(radius=1, height=2),
        trimesh.creation.annulus(r_min=0.5, r_max=1, height=0.5),
    ]
    for i, mesh in enumerate(shapes):
        mesh.export(folder / f"shape{i}.{'off' if i % 2 else 'ply'}")
    recipe = {
        "name": "unlabeled-pointcloud",
        "domain": "pointcloud",
        "description": "a folder of unlabeled meshes",
        "data": {
            "source": "mesh_files",
            "options": {
                "paths": [str(folder / "*.off"), str(folder / "*.ply")],
                "points": 128,
                "label_from_path": False,
            },
        },
        "encoder": {"name": "pointnet", "widths": [16, 32], "out_dim": 32},
        "curate": {"near_dedup": {"enabled": False}},
    }
    run = _run(run_tiny, recipe)
    _assert_no_labels(run)
    _assert_label_free_report(run, 6)


def test_rl_npz_episodes(run_tiny: Callable[..., TinyRun], tmp_path: Path) -> None:
    folder = tmp_path / "episodes"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for e in range(4):
        steps = 8
        np.savez(
            folder / f"episode{e}.npz",
            frames=rng.integers(0, 255, size=(steps + 1, 3, 16, 16), dtype=np.uint8),
            state=rng.normal(size=(steps + 1, 2)).astype(np.float32),
            action=rng.normal(size=(steps, 1)).astype(np.float32),
            reward=rng.normal(size=steps).astype(np.float32),
        )
    recipe = {
        "name": "unlabeled-rl",
        "domain": "rl",
        "description": "offline NPZ episodes",
        "data": {"source": "npz_episodes", "options": {"paths": str(folder / "*.npz"), "stack": 1}},
        "encoder": {"name": "pixel_cnn", "num_layers": 2, "num_filters": 8, "feature_dim": 16},
        "curate": {"near_dedup": {"enabled": False}},
        "views": {"policy": "drq"},
        "evaluate": {"domain": {"supervised_epochs": 1}},
    }
    run = _run(run_tiny, recipe)
    ev = run.evaluation
    # RL has no classification task: fine-tuning is skipped for that reason, the label-free part stays
    assert "no classification task" in run.path("models/{name}/finetuned/skipped.json").read_text()
    assert "svm" not in ev and "pretrained" not in ev
    assert "no labels: domain `rl` has no classification task" in run.report
    _assert_label_free_report(run, ev["representation"]["n_rows"])
