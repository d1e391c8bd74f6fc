"""Evaluate: encoders → ``metrics/<recipe>/evaluate.json`` + ``reports/<recipe>/report.md`` (``paths.*``).

Frozen-feature probes (TS2Vec's RBF-SVM with grid-searched C, a linear probe, kNN) on the
pretrained encoder and on a random-init encoder of the same architecture, beside the supervised
baseline (random init, trained end to end on the same labels by the finetune stage). Probes fit on
the training split and are scored once on the test split.

With ``evaluate.head_features`` the same probes also run on the projection head's output
``z = g(h)`` (``pretrained_head``, ``random_init_head``): SimCLR found features *before* the head
probe better, and this makes that comparison visible for every recipe.

Every probe runs once per ``evaluate.seeds`` (the probes and the random-init encoder are seeded
per seed) and is written as ``<probe>`` (mean), ``<probe>_std`` and ``<probe>_seeds``. Which rows
are labelled, how the test split was made and which test rows were left out (classes unseen in
training) follow ``stages/common/labelled.py``. With no labels the probes are skipped (``no
labels: ...``); the label-free section (``representation.py``) is always in the report.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
import sys
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from domains import DomainResult, EvalContext, get_domain
from domains.base import Row, is_test, is_train
from stages.common.cli import Dirs, main
from stages.common.config import view_policy
from stages.common.device import pick_device
from stages.common.encoders import build_encoder, build_projection_head, embed, load_encoder, load_head
from stages.common.labelled import Labelled, NoLabels, label_rows, labelled_from_rows
from stages.common.progress import progress
from stages.common.rows import table_to_rows
from stages.common.schema import Recipe
from stages.common.storage import exists, join, read_bytes, read_json, read_table, write_bytes, write_json
from stages.common.tasks import map_runs, ray_session_at_hand
from stages.evaluate import report, representation
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
    device = next(head.parameters(), torch.empty(0)).device
    out = [
        head(torch.from_numpy(h[i : i + batch_size]).to(device)).float().cpu().numpy()
        for i in range(0, len(h), batch_size)
    ]
    return np.concatenate(out).astype(np.float32)


def heads_for(pretrained_dir: str, config: dict, seed: int = 0) -> dict[str, nn.Module]:
    """Projection heads to probe: the pretrained model's own (when saved) and a random one of the
    same architecture for the random-init encoder (seeded like it)."""
    heads: dict[str, nn.Module] = {}
    pre = load_head(pretrained_dir)
    if pre is None:
        print("evaluate: head_features: the pretrained model has no saved projection head; skipped")
    else:
        heads["pretrained"] = pre
    torch.manual_seed(seed)
    heads["random_init"] = build_projection_head(config["embedding_dim"], config.get("head")).eval()
    return heads


def _random_init(recipe: Recipe, config: dict, seed: int) -> nn.Module:
    """The random-init baseline of one seed: same architecture, seeded initial weights."""
    torch.manual_seed(seed)
    return build_encoder(recipe.domain, config["encoder"]).eval()


def _probe(name: str, tr: np.ndarray, te: np.ndarray, data: Labelled, recipe: Recipe, seed: int) -> dict:
    res = evaluate_probes(
        tr, data.train.y, te, data.test.y, recipe.evaluate.probes, seed=seed, knn_k=recipe.evaluate.knn_k
    )
    if "svm_C" in res:  # the grid may pick C=inf, which strict JSON cannot hold
        res["svm_C"] = res["svm_C"] if math.isfinite(res["svm_C"]) else "inf"
    print(f"evaluate: {name} (seed {seed}): " + ", ".join(f"{k} {v}" for k, v in res.items()), flush=True)
    return res


def with_spread(per_seed: list[dict]) -> dict:
    """Per-seed ``{figure: value}`` → ``{figure: mean, figure_std: std, figure_seeds: [per seed]}``.

    The flat ``figure``/``figure_std`` pair is what `dvc metrics show`/`diff` render as columns; it
    ignores the per-seed lists. ``svm_C`` is a chosen hyperparameter, not a figure: its first
    seed's value and ``svm_C_seeds``. A figure that is ``None`` for some seed stays ``None``.
    """
    out: dict = {}
    for key in per_seed[0]:
        values = [r.get(key) for r in per_seed]
        if key == "svm_C":
            out["svm_C"], out["svm_C_seeds"] = values[0], values
        elif any(v is None for v in values):
            out[key] = None
        else:
            out[key] = float(np.mean(values))
            out[f"{key}_std"] = float(np.std(values))
            out[f"{key}_seeds"] = [float(v) for v in values]
    return out


def _classification(
    recipe: Recipe,
    dirs: Dirs,
    data: Labelled,
    config: dict,
    pretrained: nn.Module,
    random_inits: dict[int, nn.Module],
    metrics: dict,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The frozen-feature probes, once per seed; returns the first seed's features per encoder."""
    cfg = recipe.evaluate
    pretrained_dir = join(dirs.models, "pretrained")
    pre = tuple(embed(pretrained, recipe.domain, s.xs) for s in (data.train, data.test))
    feats: dict[str, tuple[np.ndarray, np.ndarray]] = {"pretrained": pre}
    per_seed: dict[str, list[dict]] = {}
    for seed in progress(cfg.seeds, f"evaluate: probes ({', '.join(cfg.probes)}) per seed"):
        rand = tuple(embed(random_inits[seed], recipe.domain, s.xs) for s in (data.train, data.test))
        feats.setdefault("random_init", rand)
        seed_feats = {"pretrained": pre, "random_init": rand}
        for name, (tr, te) in seed_feats.items():
            per_seed.setdefault(name, []).append(_probe(name, tr, te, data, recipe, seed))
        if cfg.head_features:
            # Kept out of ``feats``: domains and the embedding map see encoder features only.
            for name, head in heads_for(pretrained_dir, config, seed).items():
                tr, te = (head_features(head, f) for f in seed_feats[name])
                per_seed.setdefault(f"{name}_head", []).append(
                    _probe(f"{name}_head", tr, te, data, recipe, seed)
                )
    for name, runs in per_seed.items():
        metrics[name] = with_spread(runs)

    finetune = read_json(join(dirs.metrics, "finetune.json"))
    key = f"{max(recipe.finetune.fractions) * 100:g}%"
    full = finetune.get("random_init", {}).get("full", {})
    metrics["supervised"] = (
        {"accuracy": full[key], "accuracy_std": full.get(f"{key}_std", 0.0)} if key in full else {}
    )
    metrics["finetuned"] = {}
    for mode, values in finetune.get("pretrained", {}).items():
        if key in values:
            metrics["finetuned"][mode] = values[key]
            metrics["finetuned"][f"{mode}_std"] = values.get(f"{key}_std", 0.0)
    metrics["n_train"], metrics["n_test"], metrics["n_classes"] = (
        len(data.train.y),
        len(data.test.y),
        len(data.classes),
    )
    metrics["labels"] = {
        "n_rows": data.n_rows,
        "n_labelled": data.n_labelled,
        "test_split": "carved by group" if data.carved else "rows marked test",
        "n_unseen_test": data.n_unseen_test,
        "unseen_classes": data.unseen_classes,
    }
    return feats


def _domain_rows(rows: list[Row], data: Labelled | None) -> tuple[list[Row], list[Row]]:
    """The train/test rows a domain's own protocol sees: the same labelled split as the probes
    (carved when no row is marked test; unseen-class test rows left out), plus unlabelled rows."""
    if data is None:
        return [r for r in rows if is_train(r)], [r for r in rows if is_test(r)]
    train_ids, test_ids = set(data.train.ids), set(data.test.ids)
    unlabelled = [r for r in rows if r.get("label") is None]
    train = [r for r in rows if str(r["id"]) in train_ids] + [r for r in unlabelled if is_train(r)]
    test = [r for r in rows if str(r["id"]) in test_ids] + [r for r in unlabelled if is_test(r)]
    return train, test


@dataclass
class LabelFree:
    """The label-free section: diagnostics, retrieval examples and what is needed to draw them."""

    metrics: dict
    sample: representation.Sample
    feats: dict[str, np.ndarray]
    examples: list[dict]


def _label_free(
    recipe: Recipe, rows: list[Row], pretrained: nn.Module, random_inits: dict[int, nn.Module]
) -> LabelFree:
    cfg = recipe.evaluate
    domain = get_domain(recipe.domain)
    sample = representation.diagnostic_sample(rows, cfg.diagnostic_rows, cfg.seeds[0])
    xs = [r["x"] for r in sample.rows]
    ids = [str(r["id"]) for r in sample.rows]
    policy = view_policy(recipe)

    def emb(enc: nn.Module, batch: list[np.ndarray]) -> np.ndarray:
        return embed(enc, recipe.domain, batch)

    feats = {"pretrained": emb(pretrained, xs)}
    per_seed: dict[str, list[dict]] = {"pretrained": [], "random_init": []}
    for seed in cfg.seeds:
        va, vb = representation.two_views(domain.augment, xs, policy, seed)
        rand = emb(random_inits[seed], xs)
        feats.setdefault("random_init", rand)
        for name, enc, f in (
            ("pretrained", pretrained, feats["pretrained"]),
            ("random_init", random_inits[seed], rand),
        ):
            per_seed[name].append(representation.diagnostics(f, (emb(enc, va), emb(enc, vb))))
    examples = representation.retrieval(
        feats["pretrained"], ids, cfg.retrieval_queries, cfg.retrieval_k, cfg.seeds[0]
    )
    metrics = {
        "sample": sample.source,
        "n_rows": len(xs),
        "embedding_dim": int(feats["pretrained"].shape[1]),
        **{name: with_spread(runs) for name, runs in per_seed.items()},
        "retrieval": [{k: v for k, v in e.items() if not k.startswith("_")} for e in examples],
    }
    return LabelFree(metrics, sample, feats, examples)


def run(recipe: Recipe, dirs: Dirs) -> None:
    cfg = recipe.evaluate
    domain = get_domain(recipe.domain)
    pretrained_dir = join(dirs.models, "pretrained")
    config = json.loads(read_bytes(join(pretrained_dir, "config.json")))
    # Probes and diagnostics embed on the GPU when the recipe asks for one; domain hooks get the
    # encoders back on the CPU (their own training code places its tensors there).
    device = pick_device(recipe.ray.use_gpu)
    pretrained = load_encoder(pretrained_dir).to(device)
    random_inits = {seed: _random_init(recipe, config, seed).to(device) for seed in cfg.seeds}
    encoders = {"pretrained": pretrained, "random_init": random_inits[cfg.seeds[0]]}
    rows = table_to_rows(read_table(join(dirs.data, "curated")))
    metrics: dict = {"seeds": list(cfg.seeds)}
    feats: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    data = None
    domain_rows = rows
    if "classification" in domain.tasks:
        # evaluate.probe_rows: the published training split (ingest's rows) or the curated one
        domain_rows, source = label_rows(dirs.data, cfg.probe_rows, curated=rows)
        metrics["probe_rows"] = source.metrics()
        try:
            data = labelled_from_rows(domain_rows, source)
        except NoLabels as e:
            metrics["no_labels"] = f"no labels: {e}; the label-based probes and fine-tuning are skipped"
            print(f"evaluate: {metrics['no_labels']}", flush=True)
        else:
            print(f"evaluate: {data.describe()}", flush=True)
            feats = _classification(recipe, dirs, data, config, pretrained, random_inits, metrics)

    free = _label_free(recipe, rows, pretrained, random_inits)
    metrics["representation"] = free.metrics
    train_rows, test_rows = _domain_rows(domain_rows, data)
    encoders = {name: enc.cpu() for name, enc in encoders.items()}
    # The domain's own runs (e.g. the medical Dice fine-tunes) go to tasks only when asked for
    # (finetune.ray_tasks: true): a fresh-clone demo on 2 cores took 104 s for the six Dice runs as
    # 1-thread tasks against about 90 s one after another at 2 threads (each ran 30 s against 15 s).
    as_tasks = recipe.finetune.ray_tasks is True and ray_session_at_hand()
    if as_tasks:
        print("evaluate: the domain protocol's runs go to Ray tasks of one CPU each", flush=True)
    ctx = EvalContext(
        recipe=recipe.model_dump(),
        train_rows=train_rows,
        test_rows=test_rows,
        encoders=encoders,
        embed=lambda enc, xs: embed(enc, recipe.domain, xs),
        features=feats,
        models_dir=dirs.models,
        data_dir=dirs.data,
        seed=cfg.seeds[0],
        map_runs=functools.partial(
            map_runs, ray_cfg=recipe.ray, enabled=as_tasks, desc="evaluate: domain runs"
        ),
    )
    extra = domain.evaluate(ctx)
    if extra is not None:
        metrics["domain"] = extra.metrics
    write_json(join(dirs.metrics, "evaluate.json"), metrics)
    write_report(recipe, dirs, metrics, data, feats, extra, free)


def write_report(
    recipe: Recipe,
    dirs: Dirs,
    metrics: dict,
    data: Labelled | None,
    feats: dict[str, tuple[np.ndarray, np.ndarray]],
    extra: DomainResult | None,
    free: LabelFree | None = None,
) -> None:
    out = dirs.reports
    figures = []
    n_map = recipe.evaluate.embedding_map_points
    if data is not None and min(n_map, len(data.test.y)) >= 5:
        y = data.test.y
        idx = np.random.default_rng(0).choice(len(y), min(n_map, len(y)), replace=False)
        write_bytes(
            join(out, "embedding_map.png"),
            report.embedding_map_png({k: v[1][idx] for k, v in feats.items()}, y[idx]),
        )
        figures.append(("Embedding map (t-SNE of test embeddings)", "embedding_map.png"))
    elif data is None and free is not None and min(n_map, len(free.sample.rows)) >= 5:
        n = len(free.sample.rows)
        idx = np.random.default_rng(0).choice(n, min(n_map, n), replace=False)
        write_bytes(
            join(out, "embedding_map.png"),
            report.embedding_map_png({k: v[idx] for k, v in free.feats.items()}, None),
        )
        figures.append(
            (f"Embedding map (t-SNE of the {free.sample.source} sample, no labels)", "embedding_map.png")
        )
    history = _history(join(dirs.metrics, "pretrain"))
    if history:
        write_bytes(join(out, "pretrain_curves.png"), report.curves_png(history))
        figures.append(("Pretraining curves", "pretrain_curves.png"))
    curve = read_json(join(dirs.metrics, "label_efficiency.json"))
    if curve:
        write_bytes(join(out, "label_efficiency.png"), report.label_efficiency_png(curve))
        figures.append(("Label efficiency (mean ± std over seeds)", "label_efficiency.png"))
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
    if "no_labels" in metrics:
        text += ["## Labels\n", f"**{metrics['no_labels']}.** The sections below need no labels.\n"]
    elif "classification" not in get_domain(recipe.domain).tasks:
        text += [
            "## Labels\n",
            f"no labels: domain `{recipe.domain}` has no classification task, so fine-tuning and the "
            "classification probes do not apply; the sections below need no labels.\n",
        ]
    if data is not None:
        text += _classification_section(recipe, dirs, metrics, data)
    if free is not None:
        text += _label_free_section(recipe, free, out)
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


def _fmt(figures: dict, key: str, n_seeds: int) -> str:
    if key not in figures:
        return ""
    return report.spread(figures[key], figures.get(f"{key}_std"), n_seeds)


def _classification_section(recipe: Recipe, dirs: Dirs, metrics: dict, data: Labelled) -> list[str]:
    finetune = read_json(join(dirs.metrics, "finetune.json"))
    probes = recipe.evaluate.probes
    n_seeds = len(metrics["seeds"])
    ft_seeds = len(finetune.get("seeds", [0]))
    names = ["pretrained", "pretrained_head", "random_init", "random_init_head"]
    rows = [[name] + [_fmt(metrics[name], p, n_seeds) for p in probes] for name in names if name in metrics]
    fractions = [f"{f * 100:g}%" for f in recipe.finetune.fractions]
    ft_rows = [
        [f"{init} / {mode}"] + [_fmt(finetune[init][mode], k, ft_seeds) for k in fractions]
        for init in ("pretrained", "random_init")
        if init in finetune
        for mode in finetune[init]
    ]
    budget = {}
    for r in finetune.get("runs", []):
        budget.setdefault(f"{r['fraction'] * 100:g}%", (r["n_fit"], r["n_val"]))
    budget_line = (
        "Labels used per run (fit + early-stopping validation, both from the run's own budget): "
        + ", ".join(f"{k}: {fit} + {val}" for k, (fit, val) in budget.items())
        + ". A run with 0 validation labels trained a fixed "
        + f"{recipe.finetune.epochs} epochs without early stopping.\n"
        if budget
        else ""
    )
    sup = metrics["supervised"]
    return [
        f"{metrics['n_train']} training / {metrics['n_test']} test rows, {metrics['n_classes']} classes. "
        f"{data.describe()}\n",
        f"## Frozen-feature probes (test accuracy, {recipe.evaluate.knn_k}-NN for knn)\n",
        report.table(["encoder", *probes], rows),
        *(
            ["\n`*_head`: the same probes on the projection head's output z = g(h) instead of h.\n"]
            if "pretrained_head" in metrics or "random_init_head" in metrics
            else []
        ),
        "\nSupervised baseline (random init, trained end to end on all training labels): "
        f"**{report.spread(sup.get('accuracy'), sup.get('accuracy_std'), ft_seeds)}**.\n",
        "## Fine-tuning by label fraction (test accuracy)\n",
        report.table(["init / mode", *fractions], ft_rows),
        "",
        budget_line,
    ]


def _label_free_section(recipe: Recipe, free: LabelFree, out: str) -> list[str]:
    m = free.metrics
    n_seeds = len(recipe.evaluate.seeds)
    rows = [
        [name]
        + [
            _fmt(m[name], k, n_seeds) if m[name].get(k) is not None else "n/a"
            for k in ("alignment", "uniformity", "rankme")
        ]
        for name in ("pretrained", "random_init")
    ]
    text = [
        "## Representation without labels\n",
        f"On {m['n_rows']} {m['sample']} (a fixed seeded sample of at most "
        f"{recipe.evaluate.diagnostic_rows}): alignment of two augmented views (lower: views agree), "
        "uniformity (more negative: spread over the sphere) and effective rank RankMe (up to "
        f"min(rows, {m['embedding_dim']} dims); near 1: collapsed).\n",
        report.table(["encoder", "alignment", "uniformity", "RankMe"], rows),
        "",
    ]
    if free.examples:
        text += [
            "### Nearest neighbours (pretrained encoder, cosine distance)\n",
            report.table(
                ["query", "nearest rows (distance)"],
                [
                    [
                        e["query"],
                        ", ".join(
                            f"{n} ({d:.3f})" for n, d in zip(e["neighbours"], e["distances"], strict=True)
                        ),
                    ]
                    for e in free.examples
                ],
            ),
            "",
        ]
        xs = [r["x"] for r in free.sample.rows]
        drawable = all(isinstance(x, np.ndarray) and 1 <= x.ndim <= 4 for x in xs)
        if drawable:
            pictures = [
                (
                    e["query"],
                    xs[e["_index"][0]],
                    [
                        (n, d, xs[j])
                        for n, d, j in zip(e["neighbours"], e["distances"], e["_index"][1:], strict=True)
                    ],
                )
                for e in free.examples
            ]
            kind = getattr(get_domain(recipe.domain), "preview_kind", "auto")
            rate = next((r["meta"].get("sample_rate") for r in free.sample.rows if r.get("meta")), None)
            write_bytes(join(out, "retrieval.png"), report.retrieval_png(pictures, kind, rate))
            text += ["![Nearest neighbours](retrieval.png)\n"]
    return text


if __name__ == "__main__":
    sys.exit(main("evaluate", run))
