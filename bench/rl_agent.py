"""PPO on CartPole from a frozen pretrained pixel encoder, against random init and the true state.

The field's question for a state encoder is what an agent can do with it (issue 17's goal: the agent
on the frozen pretrained encoder reaches >= 0.8 x the true-state agent's return at the same step
budget). Every agent here has the same algorithm (stable-baselines3 PPO, its defaults), the same
environment-step budget and the same evaluation (mean return over ``--eval-episodes`` deterministic
episodes on seeds the training never used); they differ only in what they observe:

* ``pretrained`` — the frozen encoder pretrained with seed ``s`` (``--models`` with ``{seed}``), one
  agent per pretraining seed, so the spread covers pretraining and agent seeds together;
* ``random_init`` — the same architecture, frozen at its random initialisation (seed ``s``): what the
  pretraining earned;
* ``state`` — the true physical state (the upper bound the goal is a fraction of);
* ``pixels`` (opt-in, the slowest) — the same CNN trained from scratch by the RL loss.

The encoders come from a payoff run (``bench.domain_payoff`` on ``rl``, which pretrains one encoder
per seed), so nothing is pretrained here::

    python -m bench.domain_payoff --domains rl --seeds 3 --set data.options.episodes=400
    python -m bench.rl_agent  # --models: the payoff run's encoders, seed{seed} (its default run dir)

Writes ``bench/results/rl_agent_cartpole.{json,md}``: per input the per-seed returns, mean ± std and
training seconds. The returns do not depend on the machine's load; the seconds do (``meta``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench._meta import BenchRun
from domains.rl.agent import FrozenEncoderObs, StackedPixelEnv, train_and_score
from stages.common.config import load_recipe
from stages.common.encoders import build_encoder, load_encoder

RESULTS = Path(__file__).parent / "results"
PAYOFF_RUNS = Path(os.environ.get("TMPDIR", "/tmp")) / "domain_payoff"  # bench.domain_payoff --run-dir
INPUTS = ("pretrained", "random_init", "state", "pixels")
GOAL = 0.8  # the pretrained agent's return as a fraction of the true-state agent's (issue 17)


def encoder_for(observe: str, models: str, seed: int) -> torch.nn.Module | None:
    """The frozen encoder an agent observes through (None for ``state`` and ``pixels``)."""
    if observe == "pretrained":
        return load_encoder(models.format(seed=seed))
    if observe != "random_init":
        return None
    config = json.loads((Path(models.format(seed=seed)) / "config.json").read_text())
    torch.manual_seed(seed)
    return build_encoder(config["domain"], config["encoder"]).eval()


def run_agents(args: argparse.Namespace) -> dict[str, Any]:
    data = load_recipe(args.recipe).model_dump()["data"]["options"]
    name, size, stack = data.get("env", "CartPole-v1"), int(data.get("size", 64)), int(data.get("stack", 3))
    seeds = [int(s) for s in args.seeds.split(",")]
    # the architecture the encoders were pretrained with ("pixels" trains the same one from scratch)
    config = json.loads((Path(args.models.format(seed=seeds[0])) / "config.json").read_text())
    enc_cfg = {k: v for k, v in config["encoder"].items() if k != "name"}
    out: dict[str, Any] = {
        "algo": args.algo,
        "env": name,
        "env_steps": args.steps,
        "eval_episodes": args.eval_episodes,
        "models": args.models,
        "recipe": args.recipe,
        **({"algo_kwargs": args.algo_kwargs} if args.algo_kwargs else {}),
    }
    for observe in args.inputs.split(","):
        runs = []
        for seed in seeds:
            encoder = encoder_for(observe, args.models, seed)

            def make(observe: str = observe, encoder: torch.nn.Module | None = encoder) -> Any:  # noqa: ANN401
                env = StackedPixelEnv(name, size, stack, "state" if observe == "state" else "pixels")
                return FrozenEncoderObs(env, encoder) if encoder is not None else env

            kind = "pixels" if observe == "pixels" else ("state" if observe == "state" else "pretrained")
            t0 = time.perf_counter()
            r = train_and_score(
                make, kind, args.algo, args.steps, seed, args.eval_episodes, enc_cfg, args.algo_kwargs
            )
            runs.append({"seed": seed, **r})
            print(
                f"rl_agent: {observe} seed {seed}: return {r['return_mean']:.1f} "
                f"({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )
        means = [r["return_mean"] for r in runs]
        out[observe] = {
            "mean": round(float(np.mean(means)), 2),
            "std": round(float(np.std(means)), 2),
            "seeds": {str(r["seed"]): r["return_mean"] for r in runs},
            "runs": runs,
        }
    if "pretrained" in out and "state" in out:
        ratio = out["pretrained"]["mean"] / out["state"]["mean"]
        out["goal"] = {"pretrained_over_state": round(ratio, 3), "target": GOAL, "met": ratio >= GOAL}
    return out


def markdown(res: dict[str, Any]) -> str:
    lines = [
        "# RL agent: what PPO does with the frozen pixel encoder",
        "",
        f"{res['algo']} on {res['env']}, {res['env_steps']:,} environment steps per agent, mean return over "
        f"{res['eval_episodes']} deterministic evaluation episodes; mean ± std over seeds (seed s: the "
        f"encoder pretrained with seed s). Encoders: `{res['models']}`. Written by `python -m bench.rl_agent`.",
        "",
        "| observes | return | per seed | train s (sum) |",
        "|---|---|---|---|",
    ]
    for k in INPUTS:
        if k in res:
            v = res[k]
            per = ", ".join(f"{x:g}" for x in v["seeds"].values())
            lines.append(
                f"| {k} | {v['mean']:.1f} ± {v['std']:.1f} | {per} | {sum(r['train_s'] for r in v['runs']):.0f} |"
            )
    if "goal" in res:
        g = res["goal"]
        lines += [
            "",
            f"Goal (issue 17): pretrained >= {g['target']} x true state — "
            f"{'met' if g['met'] else 'missed'} ({g['pretrained_over_state']:.2f} x).",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.rl_agent", description=__doc__.splitlines()[0])
    ap.add_argument(
        "--models",
        default=str(PAYOFF_RUNS / "rl" / "seed{seed}" / "models" / "rl-cartpole" / "pretrained"),
        help="pretrained encoder directory, with {seed} (default: bench.domain_payoff's default run dir)",
    )
    ap.add_argument("--recipe", default="pipelines/rl-cartpole.yaml")
    ap.add_argument("--inputs", default="pretrained,random_init,state", help=f"subset of {','.join(INPUTS)}")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--steps", type=int, default=20_000)
    ap.add_argument("--eval-episodes", type=int, default=10)
    ap.add_argument("--algo", default="PPO")
    ap.add_argument(
        "--algo-kwargs", type=json.loads, default=None, help="JSON, e.g. '{\"n_steps\": 512}' (sb3 defaults)"
    )
    ap.add_argument("--threads", type=int, default=1, help="torch threads (PPO's MLP is small)")
    ap.add_argument("--out", default=str(RESULTS / "rl_agent_cartpole.json"))
    args = ap.parse_args(argv)
    unknown = set(args.inputs.split(",")) - set(INPUTS)
    if unknown:
        raise SystemExit(f"--inputs: unknown {sorted(unknown)}; choose from {', '.join(INPUTS)}")
    for seed in args.seeds.split(","):
        if not (Path(args.models.format(seed=int(seed))) / "config.json").is_file():
            raise SystemExit(
                f"--models: no pretrained encoder at {args.models.format(seed=int(seed))} "
                "(run python -m bench.domain_payoff --domains rl first, or point --models at one)"
            )
    torch.set_num_threads(args.threads)
    run = BenchRun()
    res = run_agents(args)
    out = Path(args.out)
    if run.write_json(out, res):
        run.write_text(out.with_suffix(".md"), markdown(res))
    print(markdown(res) + run.footer())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
