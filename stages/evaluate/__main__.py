"""Evaluate: encoders → ``metrics/<recipe>/evaluate.json`` + ``reports/<recipe>/report.md`` (``paths.*``).

Frozen-feature probes (TS2Vec's RBF-SVM with grid-searched C, a linear probe, kNN) on the
pretrained encoder and on a random-init encoder of the same architecture, beside the supervised
baseline (random init, trained end to end on the same labels by the finetune stage). Probes fit on
the training split and are scored once on the test split.

With ``evaluate.head_features`` the same probes also run on the projection head's output
``z = g(h)`` (``pretrained_head``, ``random_init_head``): SimCLR found features *before* the head
probe better, and this makes that comparison visible for every recipe.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys

import numpy as np
import torch
from torch import nn

from domains import DomainResult, EvalContext, get_domain
from domains.base import is_test, is_train
from stages.common.cli import Dirs, main
from stages.common.encoders import build_encoder, build_projection_head, embed, load_encoder, load_head
from stages.common.labelled import Labelled, load_labelled
from stages.common.rows import table_to_rows
from stages.common.schema import Recipe
from stages.common.storage import exists, join, read_bytes, read_json, read_table, write_bytes, write_json
from stages.evaluate import report
from stages.evaluate.probes import evaluate_probes


def _history(live_dir: str) -> dict[str, list[tuple[float, float]]]:
    """dvclive's per-metric TSVs → ``{name: [(epoch, value), ...]}`` (empty when absent)."""
    out: dict[str, list[tuple[float, float]]] = {}
    for name in ("loss", "alignment", "uniformity", "rankme", "data_wait_fraction"):
        uri = join(live_dir, "plots", "metrics", f"{name}.tsv")
        if exists(uri):
            reader = csv.DictReader(io.StringIO(read_bytes(uri).decode()), delimiter="\t")
            out[name] = [(float(r["step"]), float(r[name])) for r in reader]
    return out


@torch.no_grad()
def head_features(head: nn.Module, h: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """``z = g(h)`` for frozen encoder features ``h`` ``[N, D]`` (head in eval mode)."""
    head.eval()
    out = [head(torch.from_numpy(h[i : i + batch_size])).numpy() for i in range(0, len(h), batch_size)]
    return np.concatenate(out).astype(np.float32)


def heads_for(pretrained_dir: str, config: dict) -> dict[str, nn.Module]:
    """Projection heads to probe: the pretrained model's own (when saved) and a random one of the
    same architecture for the random-init encoder (seeded like it)."""
    heads: dict[str, nn.Module] = {}
    pre = load_head(pretrained_dir)
    if pre is None:
        print("evaluate: head_features: the pretrained model has no saved projection head; skipped")
    else:
        heads["pretrained"] = pre
    torch.manual_seed(0)
    heads["random_init"] = build_projection_head(config["embedding_dim"], config.get("head")).eval()
    return heads


def _probe(name: str, tr: np.ndarray, te: np.ndarray, data: Labelled, recipe: Recipe) -> dict:
    res = evaluate_probes(tr, data.train.y, te, data.test.y, recipe.evaluate.probes, seed=0)
    if "svm_C" in res:  # the grid may pick C=inf, which strict JSON cannot hold
        res["svm_C"] = res["svm_C"] if math.isfinite(res["svm_C"]) else "inf"
    print(f"evaluate: {name}: " + ", ".join(f"{k} {v}" for k, v in res.items()), flush=True)
    return res


def run(recipe: Recipe, dirs: Dirs) -> None:
    cfg = recipe.evaluate
    domain = get_domain(recipe.domain)
    pretrained_dir = join(dirs.models, "pretrained")
    config = json.loads(read_bytes(join(pretrained_dir, "config.json")))
    torch.manual_seed(0)
    encoders = {
        "pretrained": load_encoder(pretrained_dir),
        "random_init": build_encoder(recipe.domain, config["encoder"]).eval(),
    }
    metrics: dict = {}
    feats: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    data = None
    if "classification" in domain.tasks:
        data = load_labelled(dirs.data)
        for name, enc in encoders.items():
            tr = embed(enc, recipe.domain, data.train.xs)
            te = embed(enc, recipe.domain, data.test.xs)
            metrics[name] = _probe(name, tr, te, data, recipe)
            feats[name] = (tr, te)
        if cfg.head_features:
            # Kept out of ``feats``: domains and the embedding map see encoder features only.
            for name, head in heads_for(pretrained_dir, config).items():
                tr, te = (head_features(head, f) for f in feats[name])
                metrics[f"{name}_head"] = _probe(f"{name}_head", tr, te, data, recipe)
        finetune = read_json(join(dirs.metrics, "finetune.json"))
        key = f"{max(recipe.finetune.fractions) * 100:g}%"
        metrics["supervised"] = (
            {"accuracy": finetune["random_init"]["full"][key]}
            if "full" in finetune.get("random_init", {})
            else {}
        )
        metrics["finetuned"] = {m: v[key] for m, v in finetune.get("pretrained", {}).items()}
        metrics["n_train"], metrics["n_test"], metrics["n_classes"] = (
            len(data.train.y),
            len(data.test.y),
            len(data.classes),
        )

    rows = table_to_rows(read_table(join(dirs.data, "curated")))
    ctx = EvalContext(
        recipe=recipe.model_dump(),
        train_rows=[r for r in rows if is_train(r)],
        test_rows=[r for r in rows if is_test(r)],
        encoders=encoders,
        embed=lambda enc, xs: embed(enc, recipe.domain, xs),
        features=feats,
        models_dir=dirs.models,
        data_dir=dirs.data,
    )
    extra = domain.evaluate(ctx)
    if extra is not None:
        metrics["domain"] = extra.metrics
    write_json(join(dirs.metrics, "evaluate.json"), metrics)
    write_report(recipe, dirs, metrics, data, feats, extra)


def write_report(
    recipe: Recipe,
    dirs: Dirs,
    metrics: dict,
    data: Labelled | None,
    feats: dict[str, tuple[np.ndarray, np.ndarray]],
    extra: DomainResult | None,
) -> None:
    out = dirs.reports
    figures = []
    y = data.test.y if data is not None else np.zeros(0)
    n = min(recipe.evaluate.embedding_map_points, len(y))
    if n >= 5:
        idx = np.random.default_rng(0).choice(len(y), n, replace=False)
        write_bytes(
            join(out, "embedding_map.png"),
            report.embedding_map_png({k: v[1][idx] for k, v in feats.items()}, y[idx]),
        )
        figures.append(("Embedding map (t-SNE of test embeddings)", "embedding_map.png"))
    history = _history(join(dirs.metrics, "pretrain"))
    if history:
        write_bytes(join(out, "pretrain_curves.png"), report.curves_png(history))
        figures.append(("Pretraining curves", "pretrain_curves.png"))
    curve = read_json(join(dirs.metrics, "label_efficiency.json"))
    if curve:
        write_bytes(join(out, "label_efficiency.png"), report.label_efficiency_png(curve))
        figures.append(("Label efficiency", "label_efficiency.png"))
    preview = join(dirs.data, "views", "preview.png")
    if exists(preview):
        write_bytes(join(out, "views_preview.png"), read_bytes(preview))
        figures.append(("Sampled views", "views_preview.png"))
    curation = join(dirs.data, "curated", "curation_report.json")
    if exists(curation) and exists(join(dirs.data, "curated", "similarity.png")):
        cur = read_json(curation)
        write_bytes(
            join(out, "curation_similarity.png"), read_bytes(join(dirs.data, "curated", "similarity.png"))
        )
        figures.append(
            (
                f"Curation: {cur['rows_out']}/{cur['rows_in']} rows kept, removed {cur['removed_by_rule']}",
                "curation_similarity.png",
            )
        )

    pre = (
        read_json(join(dirs.metrics, "pretrain.json")) if exists(join(dirs.metrics, "pretrain.json")) else {}
    )
    text = [
        f"# {recipe.name}\n",
        f"{recipe.description}\n",
        f"Domain `{recipe.domain}`, source `{recipe.data.source}` {json.dumps(recipe.data.options)}; "
        f"scale `{recipe.scale}`.\n",
    ]
    if data is not None:
        text += _classification_section(recipe, dirs, metrics)
    if extra is not None:
        text += [extra.markdown, ""]
        for fname, png in extra.figures.items():
            write_bytes(join(out, fname), png)
    text += [
        "\n## Pretraining\n",
        report.table(["metric", "value"], [[k, v] for k, v in sorted(pre.items())])
        if pre
        else "(no metrics)",
        "",
    ]
    for title, path in figures:
        text += [f"### {title}\n", f"![{title}]({path})\n"]
    write_bytes(join(out, "report.md"), "\n".join(text).encode())
    print(f"evaluate: report -> {join(out, 'report.md')}")


def _classification_section(recipe: Recipe, dirs: Dirs, metrics: dict) -> list[str]:
    finetune = read_json(join(dirs.metrics, "finetune.json"))
    probes = recipe.evaluate.probes
    names = ["pretrained", "pretrained_head", "random_init", "random_init_head"]
    rows = [[name] + [metrics[name].get(p, "") for p in probes] for name in names if name in metrics]
    ft_rows = [
        [f"{init} / {mode}"]
        + [finetune[init][mode].get(f"{f * 100:g}%", "") for f in recipe.finetune.fractions]
        for init in finetune
        for mode in finetune[init]
    ]
    return [
        f"{metrics['n_train']} training / {metrics['n_test']} test rows, {metrics['n_classes']} classes.\n",
        "## Frozen-feature probes (test accuracy)\n",
        report.table(["encoder", *probes], rows),
        *(
            ["\n`*_head`: the same probes on the projection head's output z = g(h) instead of h.\n"]
            if "pretrained_head" in metrics or "random_init_head" in metrics
            else []
        ),
        f"\nSupervised baseline (random init, trained end to end on all training labels): "
        f"**{metrics['supervised'].get('accuracy', float('nan')):.4f}**.\n",
        "## Fine-tuning by label fraction (test accuracy)\n",
        report.table(["init / mode", *[f"{f * 100:g}%" for f in recipe.finetune.fractions]], ft_rows),
    ]


if __name__ == "__main__":
    sys.exit(main("evaluate", run))
