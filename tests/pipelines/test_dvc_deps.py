"""dvc.yaml declares every project file each stage runs, so no code change leaves stale results.

The first test derives each stage's code from its imports (the transitive closure of local modules
from ``stages/<stage>/__main__.py`` plus the recipe's domain package, which is loaded by name) and
checks that dvc.yaml's deps cover it. The second shows the consequence a user relies on: editing a
file under ``domains/<d>/`` makes ``dvc status`` report that domain's stages, and only those.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import BIN, REPO, copy_project
from tests.parsed_sources import parsed

LOCAL = ("domains", "stages", "pipelines")


def _file_of(module: str) -> Path | None:
    base = REPO.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _local_imports(path: Path) -> set[str]:
    package = path.relative_to(REPO).with_suffix("").parts
    package = package[:-1] if path.name != "__init__.py" else package[:-1]
    found: set[str] = set()
    for node in ast.walk(parsed(path)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1]) if node.level else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            found.add(module)
            found.update(f"{module}.{a.name}" for a in node.names)
    return {m for m in found if m.split(".")[0] in LOCAL}


def closure(roots: list[str]) -> set[Path]:
    """Every project file the modules ``roots`` import, lazily or not, with their parent packages."""
    todo = list(roots)
    seen: set[Path] = set()
    while todo:
        module = todo.pop()
        parts = module.split(".")
        # importing a.b.c runs a/__init__.py and a/b/__init__.py too
        for i in range(1, len(parts) + 1):
            path = _file_of(".".join(parts[:i]))
            if path is not None and path not in seen:
                seen.add(path)
                todo.extend(_local_imports(path))
    return seen


def _declared(stage: dict, recipe: str, domain: str) -> list[str]:
    return [d.replace("${key}", recipe).replace("${item.domain}", domain) for d in stage["do"]["deps"]]


def _covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(REPO).as_posix()
    return any(rel == d.rstrip("/") or rel.startswith(d.rstrip("/") + "/") for d in deps)


def _cases() -> list[tuple[str, str, str]]:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    recipes = yaml.safe_load((REPO / "params.yaml").read_text())["domains"]
    return [(s, r, item["domain"]) for s in stages for r, item in recipes.items()]


@pytest.mark.parametrize(("stage", "recipe", "domain"), _cases())
def test_every_imported_project_file_is_a_declared_dependency(stage: str, recipe: str, domain: str) -> None:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    cmd = stages[stage]["do"]["cmd"]
    entry = cmd.split(" -m ")[1].split()[0]  # `python -m stages.ingest ...` -> stages.ingest
    roots = [f"{entry}.__main__" if (_file_of(entry) or Path()).name == "__init__.py" else entry]
    roots.append(f"domains.{domain}")  # get_domain imports the recipe's domain package by name
    files = closure(roots)
    assert files, f"no project modules found for {stage}"
    missing = sorted(
        p.relative_to(REPO).as_posix()
        for p in files
        if not _covered(p, _declared(stages[stage], recipe, domain))
    )
    assert missing == [], f"dvc.yaml stage {stage}@{recipe} runs {missing} but does not declare them"


def test_closure_follows_lazy_imports_into_the_domain() -> None:
    files = {p.relative_to(REPO).as_posix() for p in closure(["stages.curate.__main__"])}
    assert "stages/common/encoders.py" in files  # imported inside a function in semantic.py
    assert "domains/base.py" in files


def _dvc(args: list[str], cwd: Path) -> str:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(
        [str(BIN / "dvc"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, f"dvc {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}"
    return proc.stdout


def _changed(status_json: str) -> set[str]:
    import json

    return set(json.loads(status_json or "{}"))


def test_editing_a_domain_file_marks_that_domains_stages_changed(tmp_path: Path) -> None:
    """A committed project (every declared output stubbed, ``dvc commit`` records the dep hashes, so
    nothing runs and no Ray starts): edit one file of the time-series plug-in, and ``dvc status``
    reports its recipe's stages from ingest on, and none of the RL recipe's."""
    proj = copy_project(tmp_path / "proj")
    shutil.rmtree(proj / ".dvc")
    params = yaml.safe_load((proj / "params.yaml").read_text())
    params["domains"] = {"timeseries-gunpoint": {"domain": "timeseries"}, "rl-cartpole": {"domain": "rl"}}
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    subprocess.run(["git", "init", "-q"], cwd=proj, check=True)
    _dvc(["init", "-q"], proj)
    stages = yaml.safe_load((proj / "dvc.yaml").read_text())["stages"]
    for recipe in params["domains"]:
        for stage in stages.values():
            for key in ("deps", "outs", "metrics", "plots"):
                for entry in stage["do"].get(key, []):
                    path = proj / (next(iter(entry)) if isinstance(entry, dict) else entry).replace(
                        "${key}", recipe
                    )
                    if path.exists() or "${" in str(path):
                        continue
                    # a stub is a file when it has a suffix, else a folder holding one file
                    if path.suffix:
                        path.parent.mkdir(parents=True, exist_ok=True)
                        path.write_text("{}\n")
                    else:
                        path.mkdir(parents=True)
                        (path / "stub").write_text("stub\n")
    _dvc(["commit", "-f", "-q"], proj)
    assert _changed(_dvc(["status", "--json"], proj)) == set()

    views = proj / "domains" / "timeseries" / "views.py"
    views.write_text(views.read_text() + "\n# a changed view policy\n")
    changed = _changed(_dvc(["status", "--json"], proj))
    expected = {
        f"{s}@timeseries-gunpoint" for s in ("ingest", "curate", "views", "pretrain", "finetune", "evaluate")
    }
    assert expected <= changed
    assert not {c for c in changed if c.endswith("@rl-cartpole")}
