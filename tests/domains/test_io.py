"""The shared reader helpers (domains/io.py) as every domain's sources use them: a folder given as a
paths option means the files under it with the source's extensions; a listing mistake is a
SourceError naming the option and the file, and through the CLI one line with exit code 2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from domains import get_domain
from domains.io import NoFilesError, SourceError, confine, expand_paths, hash_split, split_from_path
from stages.common.config import ConfigError, list_source_units, load_recipe
from tests.domains.test_options import configure_cli

REPO = Path(__file__).resolve().parents[2]


def _touch(folder: Path, *names: str) -> None:
    for n in names:
        (folder / n).parent.mkdir(parents=True, exist_ok=True)
        (folder / n).write_bytes(b"")


# (domain, source, paths option, files in the folder that count, files the source must leave out)
FOLDERS = [
    ("timeseries", "table", "paths", ["a.csv", "sub/b.parquet", "c.csv.gz"], ["README.md", "x.tsv"]),
    ("timeseries", "ts_file", "paths", ["GunPoint_TRAIN.ts", "more/GunPoint_TEST.ts"], ["notes.txt"]),
    ("audio", "files", "paths", ["a.wav", "b.FLAC", "deep/c.ogg"], ["cover.jpg", ".hidden.wav"]),
    ("medical", "nifti", "images", ["s1.nii.gz", "s2.nii"], ["s1.json"]),
    ("pointcloud", "mesh_files", "paths", ["chair/a.off", "table/b.ply", "c.obj", "d.stl"], ["x.mtl"]),
    ("pointcloud", "arrays", "paths", ["a.npz", "b.h5"], ["c.txt"]),
    ("pointcloud", "parquet", "paths", ["a.parquet"], ["a.csv"]),
    ("rl", "npz_episodes", "paths", ["ep1.npz", "run2/ep2.npz"], ["ep.json"]),
    ("rl", "parquet_episodes", "paths", ["e.parquet"], ["e.npz"]),
    ("rl", "d4rl_hdf5", "paths", ["d.hdf5", "e.h5"], ["d.npz"]),
]


@pytest.mark.parametrize(("domain", "source", "key", "good", "other"), FOLDERS, ids=lambda v: str(v))
def test_a_folder_means_its_files_with_the_sources_extensions(
    tmp_path: Path, domain: str, source: str, key: str, good: list[str], other: list[str]
) -> None:
    _touch(tmp_path, *good, *other)
    units = get_domain(domain).sources[source].list_units(**{key: str(tmp_path)})
    listed = {u.get("path") or u.get("image") for u in units}
    assert listed == {str(tmp_path / g) for g in good}


def test_a_folder_of_dicom_series_means_every_series_folder(tmp_path: Path) -> None:
    _touch(tmp_path, "p1/series1/1.dcm", "p1/series1/2.dcm", "p2/1.2.840.1/IM0001", "p2/.DS_Store")
    units = get_domain("medical").sources["dicom"].list_units(series=str(tmp_path))
    assert [u["image"] for u in units] == [str(tmp_path / "p1/series1"), str(tmp_path / "p2/1.2.840.1")]
    assert [u["id"] for u in units] == ["p1/series1", "p2/1.2.840.1"]  # a dotted UID folder keeps its name


def test_same_file_names_in_subfolders_get_distinct_ids(tmp_path: Path) -> None:
    """BIDS-like layouts repeat file names per subject: ids (and so groups) must stay distinct."""
    _touch(tmp_path, "sub-01/anat/t1.nii.gz", "sub-02/anat/t1.nii.gz")
    units = get_domain("medical").sources["nifti"].list_units(images=str(tmp_path), test_fraction=0.5)
    assert [u["id"] for u in units] == ["sub-01/anat/t1", "sub-02/anat/t1"]
    _touch(tmp_path, "run1/ep0.npz", "run2/ep0.npz")
    units = get_domain("rl").sources["npz_episodes"].list_units(paths=str(tmp_path))
    assert [u["name"] for u in units] == ["run1/ep0", "run2/ep0"]
    flat = get_domain("rl").sources["npz_episodes"].list_units(paths=str(tmp_path / "run1"))
    assert [u["name"] for u in flat] == ["ep0"]  # one folder: plain stems, as before


def test_a_folder_of_csv_series_reads_end_to_end(tmp_path: Path) -> None:
    from domains.timeseries.readers import read_source

    (tmp_path / "site-a").mkdir()
    (tmp_path / "site-a" / "x.csv").write_text("id,v0,v1,v2\ns1,1,2,3\ns2,4,5,6\n")
    (tmp_path / "y.csv").write_text("v0,v1,v2\n7,8,9\n")
    (tmp_path / "site-b").mkdir()
    (tmp_path / "site-b" / "y.csv").write_text("v0,v1,v2\n1,1,2\n")
    rows = list(read_source("table", paths=str(tmp_path)))
    assert [r["id"] for r in rows] == ["s1", "s2", "site-b/y/00000", "y/00000"]
    assert all(r["split"] is None and r["label"] is None for r in rows)  # unlabeled: training rows
    np.testing.assert_array_equal(rows[3]["x"], [[7, 8, 9]])


def test_a_tsv_given_to_table_and_a_non_mesh_in_a_glob_name_the_file(tmp_path: Path) -> None:
    _touch(tmp_path, "series.tsv", "m/a.off", "m/readme.txt")
    with pytest.raises(SourceError, match=r"series\.tsv.*unsupported extension \(expected \.csv") as e:
        get_domain("timeseries").sources["table"].list_units(paths=str(tmp_path / "series.tsv"))
    assert e.value.key == "paths"
    with pytest.raises(SourceError, match=r"readme\.txt.*unsupported extension \(expected \.off"):
        get_domain("pointcloud").sources["mesh_files"].list_units(paths=str(tmp_path / "m" / "*"))
    with pytest.raises(NoFilesError, match="no file matches"):
        expand_paths(str(tmp_path / "nope*.wav"), (".wav",))
    with pytest.raises(NoFilesError, match=r"no file with extension \.wav under"):
        expand_paths(str(tmp_path / "m"), (".wav",))


def _recipe(tmp_path: Path, options: dict) -> Path:
    path = tmp_path / "mine.yaml"
    path.write_text(
        yaml.safe_dump(
            {"name": "mine", "domain": "timeseries", "data": {"source": "table", "options": options}}
        )
    )
    return path


def test_listing_errors_become_one_config_line_naming_the_option(tmp_path: Path) -> None:
    (tmp_path / "s.tsv").write_text("1\t2\n")
    recipe = load_recipe(_recipe(tmp_path, {"paths": str(tmp_path / "s.tsv")}), REPO / "params.yaml")
    with pytest.raises(ConfigError, match=r"^data\.options\.paths: .*s\.tsv.*unsupported extension"):
        list_source_units(recipe)


def test_a_listing_error_through_the_real_cli_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "s.tsv").write_text("1\t2\n")
    recipe = _recipe(tmp_path, {"paths": str(tmp_path / "s.tsv")})
    code, lines = configure_cli(recipe, f"paths.data={tmp_path}/d")
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("configure: error: data.options.paths: "), lines
    assert "s.tsv" in lines[0] and not (tmp_path / "d").exists()


def test_confinement_split_rules(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    assert confine(str(tmp_path / "root" / "a.wav"), str(tmp_path / "root"))
    with pytest.raises(ValueError, match="escapes the data root"):
        confine(str(tmp_path / "root" / ".." / "b.wav"), str(tmp_path / "root"))
    keys = [f"speaker{i}" for i in range(400)]
    test = [k for k in keys if hash_split(k, 0.25) == "test"]
    assert 60 < len(test) < 140 and test == [k for k in keys if hash_split(k, 0.25) == "test"]
    assert split_from_path("/d/GunPoint_TEST.ts") == "test"
    assert split_from_path("/m/chair/train/chair_0001.off") == "train"
    assert split_from_path("/tmp/test_data0/chair/a.off") is None  # a folder merely starting with test
    assert split_from_path("/d/trainer.ts") is None
