"""
The teacher's traces a run may learn from: those that pass the teacher's own checks, for train.py
--traces. Training on traces that reach a wrong answer, or write a false equation, would teach
falsehoods; a file where most fail is not traces of these problems and stops the run. Serves
train.py (GSM8K's reference solutions, the default, need no filtering).

Example:
    traces = keep_sound_traces(data.read_traces("traces/gpt-4o-train.jsonl"), train, "traces/gpt-4o-train.jsonl", print)
"""
import sys
from collections import Counter

from traces import trace_verdict


def keep_sound_traces(traces, problems, path, log):
    """
    The traces of problems that pass the teacher's own checks (trace_verdict: '#### <the
    GSM8K label>' last, every equation true, at least one), as read_traces gives them. The
    rejected are counted by reason and printed; a file where most are rejected, or none is left,
    stops the run: it is not traces of these problems, and training on it would teach falsehoods.
    Example: traces = keep_sound_traces(data.read_traces(f), train, f, print)
    """
    gold = {p.id: p.answer for p in problems}
    kept, rejected, checked = {}, Counter(), 0
    for pid, ts in traces.items():
        for trace in ts if pid in gold else []:  # traces of other problems are not used: nothing to check
            checked += 1
            reason = trace_verdict(trace, gold[pid])
            if reason:
                rejected[reason] += 1
            else:
                kept.setdefault(pid, []).append(trace)
    n_bad = sum(rejected.values())
    reasons = ", ".join(f"{reason} {k}" for reason, k in rejected.most_common())
    if n_bad * 2 > checked or not kept:
        sys.exit(f"error: {path}: {n_bad} of {checked} traces of the {len(problems)} train problems fail the teacher's checks "
                 f"({reasons or 'no trace at all'}); check the file, or make it with teacher.py")
    if n_bad:
        log(f"warning: {path}: left out {n_bad} of {checked} traces that fail the teacher's checks ({reasons})")
    missing = sum(p.id not in kept for p in problems)
    if missing:
        log(f"warning: {path} has no trace for {missing} of {len(problems)} train problems; training on the other {len(problems) - missing}")
    return kept
