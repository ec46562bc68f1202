"""
Re-instantiated variants of the train problems, for train.py --variants K: each problem beside up
to K - 1 copies with new numbers and the trace recomputed exactly (reinstantiate.variants), none of them a
question of the seen-stories evaluation set. Serves train.py; with K = 1 (the default) nothing here runs.

Example:
    problems, traces = with_variants(train, traces, 16, 1337, seen_story_questions(cfg.seen_stories))
"""
import random
import time
from pathlib import Path

import data
from reinstantiate import variants as verified_variants


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
    if cfg.variants <= 1:
        return train, traces
    t0, n_problems = time.time(), len(train)
    train, traces = with_variants(train, traces, cfg.variants, cfg.seed, seen_story_questions(cfg.seen_stories))
    log(f"variants: {len(train)} problems from {n_problems} (up to {cfg.variants} each, original included) in {time.time() - t0:.0f} s")
    return train, traces


def seen_story_questions(path):
    """The questions of the seen-stories evaluation set (relative paths are the repository's), or none if it is absent."""
    path = Path(path) if Path(path).is_absolute() or Path(path).exists() else data.ROOT / path
    return {r["question"] for r in data.read_jsonl(path)} if path and path.is_file() else set()
