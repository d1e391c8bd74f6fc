"""Views: ``curated/`` → ``views/plan.json`` (the view plan) + ``views/preview.png``, and with
``views.materialize: K`` the bank of K views per training row (``views/bank/``, see ``bank.py``).

By default views are generated online in the pretraining workers from this plan (cheap
augmentations); the plan pins the policy, its resolved steps and the seed so a run is reproducible.
"""

from __future__ import annotations

import sys

import numpy as np

from domains import get_domain
from domains.base import is_train
from domains.views import PolicyError
from stages.common.cli import Dirs, StageError, main
from stages.common.config import view_policy
from stages.common.progress import progress
from stages.common.rows import table_to_rows
from stages.common.schema import Recipe
from stages.common.storage import atomic_dir, join, read_table, write_bytes, write_json
from stages.views.preview import preview_png


def policy_error(e: Exception) -> str:
    """One line naming the recipe key: the engine's own errors already name ``views.policy[i]``."""
    return str(e) if isinstance(e, PolicyError) else f"views.policy: {e}"


def run(recipe: Recipe, dirs: Dirs) -> None:
    domain = get_domain(recipe.domain)
    policy = view_policy(recipe)
    rows = [r for r in table_to_rows(read_table(join(dirs.data, "curated"))) if is_train(r)]
    if not rows:
        raise StageError("no non-test rows to make views from")
    rng = np.random.default_rng(recipe.views.seed)
    try:
        picks = rng.choice(len(rows), size=min(recipe.views.preview_pairs, len(rows)), replace=False)
        samples = [
            (
                rows[i]["id"],
                rows[i]["x"],
                [domain.augment(rows[i]["x"], rng, policy) for _ in range(recipe.views.n_views)],
            )
            # some policies cost a second a view (MONAI affine on a large patch, librosa pitch shift)
            for i in progress(picks, "views: preview rows", every_percent=25)
        ]
    except (KeyError, TypeError, ValueError) as e:
        raise StageError(policy_error(e)) from None
    plan = {
        "domain": recipe.domain,
        "policy": policy.name,
        "params": policy.params,
        "n_views": recipe.views.n_views,
        "small_crops": recipe.views.small_crops,
        "small_crop_scale": recipe.views.small_crop_scale,
        "seed": recipe.views.seed,
        "mode": "materialized" if recipe.views.materialize else "online",
        "bank_size": recipe.views.materialize,
    }
    with atomic_dir(join(dirs.data, "views")) as tmp:
        if recipe.views.materialize:
            from stages.common.bank import BANK_DIR, materialize
            from stages.common.ray_session import init_ray

            init_ray(recipe.ray)
            plan["bank"] = materialize(
                join(dirs.data, "curated"),
                join(tmp, BANK_DIR),
                recipe.domain,
                policy,
                recipe.views.materialize,
                recipe.views.seed,
            )
            b = plan["bank"]
            print(
                f"views: materialised {b['views']} views of {b['rows']} rows in {b['seconds']} s ({b['views_per_s']}/s)"
            )
        write_json(join(tmp, "plan.json"), plan)
        rate = next((rows[i]["meta"].get("sample_rate") for i in picks if rows[i].get("meta")), None)
        write_bytes(join(tmp, "preview.png"), preview_png(samples, domain.preview_kind, rate))
    print(
        f"views: {plan['mode']} plan '{policy.name}' with {recipe.views.n_views} views; preview of {len(samples)} rows"
    )


if __name__ == "__main__":
    sys.exit(main("views", run))
