"""
Re-instantiated variants of the train problems, for train.py --variants K: each problem beside up
to K - 1 copies with new numbers and the trace recomputed exactly (reinstantiate.variants), none of them a
question of the seen-stories evaluation set. Serves train.py; with K = 1 (the default) nothing here runs.

Example:
    problems, traces = with_variants(train, traces, 16, 1337, seen_story_questions(cfg.seen_stories))
"""
import functools
import random
import sys
import time
from pathlib import Path

import data
from reinstantiate import variants as verified_variants

SEEN_STORIES = "results/seen-stories/seen-stories.jsonl"  # train.py's default --seen-stories: the committed set


def with_variants(problems, traces, k, seed, held_out):
    """
    The problems and their traces with up to k - 1 verified variants of each beside it (new
    numbers, the trace recomputed exactly: reinstantiate.variants), drawn reproducibly from seed; a
    variant whose question is in held_out (the seen-stories evaluation set) is left out.
    Example: problems, traces = with_variants(train, traces, 16, 1337, set())
    """
    if k <= 1:
        return problems, traces
    out_problems, out_traces = [], {}
    for p in problems:
        out_problems.append(p)
        out_traces[p.id] = traces.get(p.id, [])
        if not out_traces[p.id]:
            continue
        rng = random.Random(f"{seed}-{p.id}")  # one stream per problem: the same variants whatever else is trained
        for i, (question, trace) in enumerate(verified_variants(p.question, out_traces[p.id][0], k, rng)[1:], 1):
            if question not in held_out:
                out_problems.append(data.Problem(f"{p.id}~{i}", question, trace, data.extract_answer(trace)))
                out_traces[f"{p.id}~{i}"] = [trace]
    return out_problems, out_traces


def add_variants(cfg, train, traces, log):
    """
    train.py's --variants: the train problems and traces with cfg.variants - 1 variants of each
    (the seen-stories questions held out), and a line saying how many and how long; as they are with 1.
    Example: train, traces = add_variants(cfg, train, traces, print)
    """
    try:  # a --seen-stories given is read whatever --variants, so a mistyped one is caught at once
        held_out = seen_story_questions(cfg.seen_stories) if cfg.variants > 1 or cfg.seen_stories != SEEN_STORIES else set()
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"error: {e}")
    if cfg.variants <= 1:
        return train, traces
    t0, n_problems = time.time(), len(train)
    train, traces = with_variants(train, traces, cfg.variants, cfg.seed, held_out)
    log(f"variants: {len(train)} problems from {n_problems} (up to {cfg.variants} each, original included) in {time.time() - t0:.0f} s")
    return train, traces


def held_out_count(cfg):
    """How many seen-stories questions config.json records as kept out of training (0 without --variants)."""
    return len(seen_story_questions(cfg.seen_stories)) if cfg.variants > 1 else 0


@functools.lru_cache(maxsize=4)  # read once per run: add_variants and config.json's record share it
def seen_story_questions(path):
    """
    The questions of the seen-stories evaluation set (a relative path not found as given is the
    repository's). A path that cannot be read, or a row without a question, raises an error naming
    it; the default file (SEEN_STORIES) missing is a loud warning and holds nothing out.
    Example: len(seen_story_questions(SEEN_STORIES)) == 500
    """
    path = Path(path) if Path(path).is_absolute() or Path(path).exists() else data.ROOT / path
    if not path.exists() and str(path) == str(data.ROOT / SEEN_STORIES):
        print(f"warning: {path} not found: NO seen-stories question is held out of the variants trained on; "
              f"restore it (git checkout {SEEN_STORIES}) or pass --seen-stories", file=sys.stderr)
        return frozenset()
    if not path.is_file():
        raise FileNotFoundError(f"--seen-stories {path}: {'a folder' if path.is_dir() else 'not found'}; give the "
                                f"seen-stories JSONL (reinstantiate.py seen-stories writes one)")
    rows = data.read_jsonl(path, numbered=True)
    bad = next((i for i, r in rows if not (isinstance(r, dict) and isinstance(r.get("question"), str))), None)
    if bad is not None:
        raise ValueError(f"{path}:{bad}: a row without a \"question\" string; fix or remove that line")
    return frozenset(r["question"] for _, r in rows)
