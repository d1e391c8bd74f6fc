"""The front door's last screen: one compact table, one row per recipe (and headline), after
``make repro``.

``python -m pipelines.summary`` reads ``metrics/<recipe>/evaluate.json`` for every recipe listed
under ``domains:`` in params.yaml and prints its field's headline figure for the pretrained
encoder, the random-init encoder and the field's baseline, ``mean ± std`` when the figure carries
seeds, plus where the recipe's report is. ``dvc metrics show`` stays available for every key.

A figure is read as a number, as ``{"mean": m, "std": s}``, or as ``key`` with a sibling
``key_std`` (what the evaluate stage writes when ``evaluate.seeds`` has more than one seed).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class Headline:
    """Where one headline figure lives in evaluate.json, for the three columns of the table.

    A path is dotted keys; ``@max`` (``@min``) picks the key with the largest (smallest) number in
    it (e.g. the largest label budget, ``64_patches``). ``baseline`` names what the third column is.
    """

    metric: str
    pretrained: str
    random_init: str
    baseline: str | None
    baseline_name: str


# The field's headline protocol per domain (what its README and bench tables lead with).
HEADLINES: dict[str, list[Headline]] = {
    "timeseries": [
        Headline("SVM acc", "pretrained.svm", "random_init.svm", "supervised.accuracy", "supervised")
    ],
    "pointcloud": [
        Headline("SVM acc", "pretrained.svm", "random_init.svm", "supervised.accuracy", "supervised")
    ],
    "audio": [
        Headline(
            "speaker-split acc",
            "domain.split.pretrained.logreg",
            "domain.split.random_init.logreg",
            "domain.split.mfcc_logreg.logreg",
            "MFCC",
        )
    ],
    "medical": [
        Headline(
            "Dice",
            "domain.dice.pretrained.@max",
            "domain.dice.random_init.@max",
            "domain.dice.intensity.@max",
            "intensity",
        ),
        Headline("SVM acc", "pretrained.svm", "random_init.svm", "supervised.accuracy", "supervised"),
    ],
    "rl": [
        Headline(
            "state-probe R²",
            "domain.state_probe.pretrained.state_r2_mean",
            "domain.state_probe.random_init.state_r2_mean",
            "domain.state_probe.supervised.state_r2_mean",
            "supervised",
        )
    ],
}
DEFAULT = HEADLINES["timeseries"]

Figure = tuple[float, float | None]  # (mean, std or None)


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v) if math.isfinite(v) else None


def figure(metrics: dict[str, Any], path: str) -> Figure | None:
    """The figure at dotted ``path`` as (mean, std); ``None`` when absent or not a number."""
    *parents, leaf = path.split(".")
    node: Any = metrics
    for key in parents:
        node = node.get(key) if isinstance(node, dict) else None
    if not isinstance(node, dict):
        return None
    if leaf in ("@max", "@min"):
        numbered = [(float(m.group()), k) for k in node if (m := re.search(r"\d+(\.\d+)?", k))]
        if not numbered:
            return None
        leaf = (max if leaf == "@max" else min)(numbered)[1]
    value = node.get(leaf)
    if isinstance(value, dict):  # {"mean": .., "std": ..}
        mean = _number(value.get("mean"))
        return None if mean is None else (mean, _number(value.get("std")))
    mean = _number(value)
    return None if mean is None else (mean, _number(node.get(f"{leaf}_std")))


def fmt(f: Figure | None, seeds: bool) -> str:
    """``0.812`` or ``0.812 ± 0.010``; ``—`` for a figure the run did not produce."""
    if f is None:
        return "—"
    mean, std = f
    return f"{mean:.3f} ± {std:.3f}" if seeds and std is not None else f"{mean:.3f}"


def _has_seeds(metrics: dict[str, Any]) -> bool:
    """Show a spread unless every per-seed list the evaluate stage wrote holds one seed (its std
    is then 0 by construction); figures without seed lists show whatever std they carry."""
    lists = re.findall(r'_seeds": \[([^\]]*)\]', json.dumps(metrics))
    return not lists or any("," in values for values in lists)


def summary_rows(root: Path) -> list[list[str]]:
    """``[recipe, metric, pretrained, random init, baseline, report]`` for every recipe in params.yaml."""
    params = yaml.safe_load((root / "params.yaml").read_text()) or {}
    paths = params.get("paths") or {}
    metrics_dir = root / paths.get("metrics", "metrics")
    reports_dir = Path(paths.get("reports", "reports"))
    out = []
    for recipe, item in (params.get("domains") or {}).items():
        domain = (item or {}).get("domain", "")
        report = (reports_dir / recipe / "report.md").as_posix()
        path = metrics_dir / recipe / "evaluate.json"
        if not path.exists():
            out.append([recipe, "not run yet", "", "", "", report])
            continue
        try:
            metrics = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise SystemExit(f"summary: {path} is not valid JSON: {e}") from None
        seeds = _has_seeds(metrics)
        for i, h in enumerate(HEADLINES.get(domain, DEFAULT)):
            base = figure(metrics, h.baseline) if h.baseline else None
            baseline = f"{fmt(base, seeds)} {h.baseline_name}" if base is not None else "—"
            row = [
                recipe if i == 0 else "",
                h.metric,
                fmt(figure(metrics, h.pretrained), seeds),
                fmt(figure(metrics, h.random_init), seeds),
                baseline,
                report if i == 0 else "",
            ]
            out.append(row)
    return out


HEADER = ["recipe", "metric", "pretrained", "random init", "baseline", "report"]


def render(rows: list[list[str]], markdown: bool = False) -> str:
    """A Markdown table, or plain text: the figures as aligned columns, then one report path per
    recipe underneath (as a column it would push the table past a terminal's width)."""
    if markdown:
        lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
    header, table = HEADER[:-1], [r[:-1] for r in rows]
    widths = [max(len(r[i]) for r in [header, *table]) for i in range(len(header))]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table]
    reports = [(r[0], r[-1]) for r in rows if r[0]]
    out += ["", "reports:"] + [f"  {name.ljust(widths[0])}  {path}" for name, path in reports]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=Path("."), help="project root (holds params.yaml)")
    ap.add_argument("--md", action="store_true", help="a Markdown table instead of plain text")
    args = ap.parse_args(argv)
    if not (args.root / "params.yaml").exists():
        print(f"summary: no params.yaml under {args.root}", file=sys.stderr)
        return 2
    print(render(summary_rows(args.root), markdown=args.md))
    if not args.md:
        print("\nEvery metric: dvc metrics show -R metrics/<recipe> (add --md for Markdown)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
