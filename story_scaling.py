"""
The story-scaling forecast: how a student's knowledge of stories it never saw grows with the
number of train stories it learned from (train.py --stories), and how many stories it would take
for new stories to be known as well as seen ones are. Serves evaluate.py: it reads the eval.json
and predictions.jsonl that evaluate.py writes into each run folder (eval-val/, eval-test/, eval-seen/).

The measure is target_loss, the teacher-forced cross-entropy of the reference target (evaluate.py),
continuous where exact match on new stories sits at its floor. A power law is fitted to val
target_loss against N on log-log axes; the bootstrap resamples val problems (the same resample at
every N, as every run is scored on the same problems) and refits, so the interval says how much the
forecast moves with the choice of problems, not with the training runs' own noise.

    python story_scaling.py runs/curve --mode cot --out results/story-scaling
"""
import argparse
import json
import math
import random
from pathlib import Path

import numpy as np

from charts import svg_chart
from files import write_atomic


def fit_power_law(ns, ys):
    """
    Least squares on log-log axes: (a, b) with y = a * N ** b.
    Example: fit_power_law([1, 10, 100], [4.0, 2.0, 1.0]) == (4.0, -0.301...)  # halves every decade
    """
    b, log_a = np.polyfit(np.log(ns), np.log(ys), 1)
    return float(math.exp(log_a)), float(b)


def stories_needed(a, b, target):
    """
    The N at which a * N ** b reaches target (inf when the fit never gets there: a flat or wrong-way curve).
    Example: stories_needed(4.0, -0.5, 1.0) == 16.0
    """
    if b == 0 or (target < a) != (b < 0):
        return math.inf
    return (target / a) ** (1 / b)


def finite(x):
    """x, or None for infinity (JSON has no infinity): None reads "never"."""
    return None if math.isinf(x) else float(x)


def said(n):
    """A forecast story count for people: 2.1e+06, or never."""
    return "never" if n is None else f"{n:.3g}"


def read_run(folder):
    """One run folder's story count, seed and, per evaluation set, its eval.json metrics and prediction rows by id."""
    config = json.loads((folder / "config.json").read_text())
    sets = {}
    for ev in sorted(folder.glob("eval-*")):
        if (ev / "eval.json").exists():
            rows = (ev / "predictions.jsonl").read_text().splitlines() if (ev / "predictions.jsonl").exists() else []
            sets[ev.name.removeprefix("eval-")] = (json.loads((ev / "eval.json").read_text())["results"][0],
                                                  {r["id"]: r for r in map(json.loads, rows)})
    return {"mode": config["mode"], "stories": config["train_stories"], "seed": config["seed"], "sets": sets, "name": folder.name}


def pooled(rows, ids, num, den):
    """Sum of rows' num over the sum of their den, over ids (repeats count again: a bootstrap sample)."""
    total = sum(rows[i][den] or 0 for i in ids)
    return sum(rows[i][num] or 0 for i in ids) / total if total else None


def step_precision_of(rows, ids):
    """Micro-averaged step precision over ids, as evaluate.summarize computes it."""
    matched = sum(rows[i]["step_match"]["matched"] for i in ids if rows[i].get("step_match"))
    out = sum(rows[i]["step_match"]["n_output"] for i in ids if rows[i].get("step_match"))
    return matched / out if out else None


MEASURES = {  # name: (value over a set of problem ids, does a better student have it lower?)
    "target_loss": (lambda rows, ids: pooled(rows, ids, "target_nats", "target_tokens"), True),
    "step_precision": (step_precision_of, False),
}


def forecast(runs, measure, reps=1000, seed=0):
    """
    Fit measure on val against the story count (one point per story count: the mean over seeds),
    and the story count at which val would reach the seen-stories value of the largest run, with
    a bootstrap over val problems: {"fit", "target", "stories_needed", "interval95", "points"}.
    Example: forecast(read_runs("runs/curve", "cot"), "target_loss")["stories_needed"]
    """
    value, _ = MEASURES[measure]
    largest = max(r["stories"] for r in runs)
    seen = [value(r["sets"]["seen"][1], list(r["sets"]["seen"][1])) for r in runs if r["stories"] == largest and "seen" in r["sets"]]
    target = float(np.mean(seen))
    ids = sorted(set.intersection(*(set(r["sets"]["val"][1]) for r in runs)))
    ns = sorted({r["stories"] for r in runs})

    def curve(sample):
        return [float(np.mean([value(r["sets"]["val"][1], sample) for r in runs if r["stories"] == n])) for n in ns]

    points = curve(ids)
    a, b = fit_power_law(ns, points)
    rng, needed = random.Random(seed), []
    for _ in range(reps):
        needed.append(stories_needed(*fit_power_law(ns, curve([rng.choice(ids) for _ in ids])), target))
    needed.sort()  # by rank, not np.percentile: a resample whose curve never gets there is inf, and inf - inf is nan
    lo, hi = needed[int(0.025 * reps)], needed[max(0, math.ceil(0.975 * reps) - 1)]
    return {"measure": measure, "fit": {"a": a, "b": b}, "target": target, "target_from": f"seen stories, {largest} stories",
            "stories_needed": finite(stories_needed(a, b, target)), "interval95": [finite(lo), finite(hi)],
            "never_share": sum(map(math.isinf, needed)) / reps,
            "points": [{"stories": n, "val": v} for n, v in zip(ns, points)], "val_problems": len(ids), "reps": reps}


def table(runs):
    """The markdown table of every run: story count, seed, and each set's exact match, target loss, step precision and grounding."""
    head = "| mode | stories | seed | val EM | val target loss | val step precision | val grounded | test EM | test target loss | seen EM | seen target loss |"
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    cell = lambda m, k, spec: "—" if m is None or m.get(k) is None else format(m[k], spec)
    for r in sorted(runs, key=lambda r: (r["mode"], r["stories"], r["seed"])):
        m = {s: r["sets"].get(s, (None, None))[0] for s in ("val", "test", "seen")}
        lines.append(f"| {r['mode']} | {r['stories']} | {r['seed']} | {cell(m['val'], 'exact_match', '.1%')} | "
                     f"{cell(m['val'], 'target_loss', '.3f')} | {cell(m['val'], 'step_precision', '.3f')} | "
                     f"{cell(m['val'], 'grounded_operand_rate', '.1%')} | {cell(m['test'], 'exact_match', '.1%')} | "
                     f"{cell(m['test'], 'target_loss', '.3f')} | {cell(m['seen'], 'exact_match', '.1%')} | {cell(m['seen'], 'target_loss', '.3f')} |")
    return "\n".join(lines)


def read_runs(folder, mode=None):
    """Every run folder under folder (those with a config.json and a val evaluation), of mode if given."""
    runs = [read_run(p.parent) for p in sorted(Path(folder).glob("*/config.json"))]
    return [r for r in runs if "val" in r["sets"] and (mode is None or r["mode"] == mode)]


def main(argv=None):
    p = argparse.ArgumentParser(description="Fit val target_loss against the story count and forecast the stories needed.")
    p.add_argument("folder", help="a folder of run folders (train.py --stories N, each scored into eval-val/, eval-test/, eval-seen/)")
    p.add_argument("--mode", default="cot", help="the runs to fit (the table shows every mode)")
    p.add_argument("--reps", type=int, default=1000, help="bootstrap resamples of the val problems")
    p.add_argument("--out", default="", help="where scaling.json, scaling.md and the chart go (default: the folder)")
    args = p.parse_args(argv)
    runs, out = read_runs(args.folder), Path(args.out or args.folder)
    mine = [r for r in runs if r["mode"] == args.mode]
    fits = {m: forecast(mine, m, args.reps) for m, (value, _) in MEASURES.items()  # step precision: reasoning modes only
            if all(value(r["sets"]["val"][1], list(r["sets"]["val"][1])) is not None for r in mine)}
    write_atomic(out / "scaling.json", json.dumps(fits, indent=2) + "\n")
    write_atomic(out / "scaling.md", table(runs) + "\n")
    series = [(f"{mode} val", [(n, float(np.mean([r["sets"]["val"][0]["target_loss"] for r in runs if r["mode"] == mode and r["stories"] == n])))
                               for n in sorted({r["stories"] for r in runs if r["mode"] == mode})], None)
              for mode in sorted({r["mode"] for r in runs})]
    f = fits["target_loss"]
    svg_chart(out / "target_loss.svg", "Reference-target loss on val (new stories) against train stories", "train stories",
              "target loss (nats/token)", series, hline=(f"{args.mode} seen stories, largest run", f["target"]), logx=True,
              notes=[f"{args.mode} fit: {f['fit']['a']:.3g} * N^{f['fit']['b']:.3f}; reaches the seen-stories loss at "
                     f"N = {said(f['stories_needed'])} (95% {said(f['interval95'][0])} to {said(f['interval95'][1])})"])
    print(table(runs))
    for m, f in fits.items():
        print(f"{m}: val = {f['fit']['a']:.4g} * N^{f['fit']['b']:.4f}; seen-stories value {f['target']:.4f}; stories needed "
              f"{said(f['stories_needed'])} (95% {said(f['interval95'][0])} to {said(f['interval95'][1])}; never in {f['never_share']:.0%} of resamples)")
    print(f"wrote {out / 'scaling.json'}, {out / 'scaling.md'}, {out / 'target_loss.svg'}")


if __name__ == "__main__":
    main()
