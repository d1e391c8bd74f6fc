"""Load a recipe: ``params.yaml`` defaults ⊕ ``pipelines/<recipe>.yaml`` ⊕ its scale ⊕ ``--set``.

Validation happens here, before any stage does work; every problem becomes one line naming the key.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, ValidationError

from domains.base import ViewPolicy
from stages.common.schema import TRAIN_STATISTICS_MODES, Recipe

if TYPE_CHECKING:
    from domains.base import Domain

#: keys of params.yaml that steer DVC rather than configure a recipe
PIPELINE_KEYS = ("domains",)


class ConfigError(ValueError):
    """A bad recipe or parameter; its message is one line that names the key."""


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Recursively merge ``override`` into a copy of ``base`` (lists and scalars replace)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_yaml(path: Path, what: str = "") -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (FileNotFoundError, IsADirectoryError):
        raise ConfigError(f"{what}{path}: file not found") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def parse_set(items: list[str]) -> dict[str, Any]:
    """``["pretrain.epochs=3", "ray.num_workers=1"]`` → nested dict (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value")
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(raw)
    return out


def _format(err: ValidationError, source: str, prefix: str = "", model: type[BaseModel] | None = None) -> str:
    """One line: ``source: full.key: what is wrong (got ...)``; an unknown key lists the known ones
    when ``model`` (the section's model) says what they are."""
    first = err.errors()[0]
    loc = ".".join([prefix] * bool(prefix) + [str(p) for p in first["loc"]]) or "<root>"
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
        known = _known_keys(model, first["loc"][:-1]) if model is not None else None
        if known is not None:
            msg += f" (known: {', '.join(known) or 'none'})"
    got = first.get("input")
    got_s = f" (got {got!r})" if got is not None and not isinstance(got, dict) else ""
    more = f" [+{len(err.errors()) - 1} more]" if len(err.errors()) > 1 else ""
    return f"{source}: {loc}: {msg}{got_s}{more}"


def _known_keys(model: type[BaseModel], loc: tuple) -> list[str] | None:
    """The field names of the (nested) model at ``loc``, or None when it cannot be followed."""
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        nested = [a for a in getattr(field.annotation, "__args__", (field.annotation,)) if _is_model(a)]
        if not nested:
            return None
        model = nested[0]
    return list(model.model_fields)


def _is_model(t: object) -> bool:
    return isinstance(t, type) and issubclass(t, BaseModel)


def load_recipe(
    recipe_path: str | Path,
    params_path: str | Path | None = "params.yaml",
    overrides: list[str] | None = None,
) -> Recipe:
    """Merge and validate; raise :class:`ConfigError` with a one-line message on any problem."""
    recipe_path = Path(recipe_path)
    # A mistyped --params path is an error: silently using the schema's defaults instead would run
    # a different experiment than the one asked for. None: the schema's defaults, deliberately.
    params = {} if params_path is None else read_yaml(Path(params_path), "--params ")
    defaults = {k: v for k, v in params.items() if k not in PIPELINE_KEYS}
    merged = deep_merge(defaults, read_yaml(recipe_path))
    # A recipe without a name is named after its file (pipelines/<name>.yaml, as dvc.yaml expects),
    # so a copied template needs no edit to be a new recipe.
    merged.setdefault("name", recipe_path.stem)
    merged = deep_merge(merged, parse_set(overrides or []))
    scales = merged.pop("scales", {}) or {}
    scale = merged.get("scale", "demo")
    if scale not in scales and scale != "demo":
        known = ", ".join(sorted(scales)) or "none"
        raise ConfigError(f"{recipe_path}: scale: unknown scale {scale!r} (recipe defines: {known})")
    # The scale overrides the recipe, and explicit --set overrides the scale.
    merged = deep_merge(merged, scales.get(scale, {}) or {})
    merged = deep_merge(merged, parse_set(overrides or []))
    try:
        recipe = Recipe.model_validate(merged)
    except ValidationError as e:
        raise ConfigError(_format(e, str(recipe_path))) from None
    _check_domain(recipe, recipe_path)
    return recipe


def _check_domain(recipe: Recipe, source: Path) -> None:
    from domains import get_domain  # local: keeps schema loading free of torch imports

    try:
        domain = get_domain(recipe.domain)
    except KeyError as e:
        raise ConfigError(f"{source}: domain: {e.args[0]}") from None
    from stages.common.losses import LossOptionError, check_loss_options, check_options, list_losses

    losses = sorted(set(list_losses()) | set(domain.objectives()))
    if recipe.pretrain.loss not in losses:
        raise ConfigError(
            f"{source}: pretrain.loss: unknown loss {recipe.pretrain.loss!r} for domain "
            f"{recipe.domain!r} (known: {', '.join(losses)})"
        )
    if recipe.pretrain.loss == "supcon":
        # Pretraining sees unlabeled rows only (labels would leak the probe's task); SupCon without
        # labels is NT-Xent, so naming it would be a silent lie.
        raise ConfigError(
            f"{source}: pretrain.loss: 'supcon' needs labels, which pretraining never sees; use "
            "'ntxent' (its label-free form) or SupConLoss with labels from your own loop"
        )
    options, name = recipe.pretrain.loss_options, recipe.pretrain.loss
    objective = domain.objectives().get(name)
    try:
        if objective is not None:  # a domain objective's options are its constructor's arguments
            check_options(objective, options, f"the {recipe.domain} objective {name!r}")
        else:
            check_loss_options(name, options)
    except LossOptionError as e:
        key = f"pretrain.loss_options.{e.key}" if e.key else "pretrain.loss_options"
        raise ConfigError(f"{source}: {key}: {e}") from None
    if recipe.data.source not in domain.sources:
        known = ", ".join(sorted(domain.sources))
        raise ConfigError(
            f"{source}: data.source: unknown source {recipe.data.source!r} for domain "
            f"{recipe.domain!r} (known: {known})"
        )
    if recipe.data.normalise in TRAIN_STATISTICS_MODES and not domain.normalise_from_train:
        raise ConfigError(
            f"{source}: data.normalise: {recipe.data.normalise!r} (statistics of the training rows) is "
            f"not defined for domain {recipe.domain!r}; use auto, per_row or none"
        )
    _check_options(recipe, domain, source)


def _check_options(recipe: Recipe, domain: Domain, source: Path) -> None:
    """``data.options``, ``encoder`` and ``evaluate.domain`` against the domain's typed option models
    (``domains/<domain>/options.py``): a typo fails here, naming the full key, not in a Ray worker."""
    checks: list[tuple[str, type[BaseModel] | None, dict[str, Any]]] = [
        ("data.options", domain.source_options.get(recipe.data.source), recipe.data.options),
        ("evaluate.domain", domain.evaluate_options, recipe.evaluate.domain),
    ]
    if domain.encoder_options:
        encoder = dict(recipe.encoder)
        name = encoder.pop("name", next(iter(domain.encoder_options)))
        if name not in domain.encoder_options:
            known = ", ".join(domain.encoder_options)
            raise ConfigError(
                f"{source}: encoder.name: unknown {recipe.domain} encoder {name!r} (known: {known})"
            )
        checks.append(("encoder", domain.encoder_options[name], encoder))
    for key, model, value in checks:
        if model is None:
            continue
        try:
            model.model_validate(value)
        except ValidationError as e:
            raise ConfigError(_format(e, str(source), key, model)) from None


def list_source_units(recipe: Recipe) -> list[dict[str, Any]]:
    """The units ingest will read, listed now (cheap: names of files, not their contents), so that a
    paths option matching nothing, a file of the wrong type or missing demo data is a one-line
    :class:`ConfigError` naming the option (``data.options.paths: ...``) before any work starts."""
    from domains import get_domain
    from domains.io import SourceError

    src = get_domain(recipe.domain).sources[recipe.data.source]
    try:
        units = src.list_units(**recipe.data.options)
    except SourceError as e:
        raise ConfigError(f"data.options{'.' + e.key if e.key else ''}: {e}") from None
    except (TypeError, ValueError, OSError, ImportError) as e:  # the reader's own one-line reason
        raise ConfigError(f"data.source {recipe.data.source!r}: {str(e).splitlines()[0]}") from None
    if not units:
        raise ConfigError(
            f"data.source {recipe.data.source!r} found nothing to read with {recipe.data.options}"
        )
    return units


def view_policy(recipe: Recipe) -> ViewPolicy:
    """The recipe's ``views.policy`` as a :class:`ViewPolicy` (a named policy or explicit steps)."""
    policy = recipe.views.policy
    if isinstance(policy, str):
        return ViewPolicy(name=policy)
    return ViewPolicy(name="custom", params={"steps": [s.model_dump() for s in policy]})
