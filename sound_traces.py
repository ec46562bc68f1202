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

from replies import write_out_notes
from traces import ANNOTATION, trace_verdict


def keep_sound_traces(traces, problems, path, log):
    """
    The traces of problems that pass the teacher's own checks (trace_verdict: '#### <the
    GSM8K label>' last, every equation true, at least one), as read_traces gives them. The
    rejected are counted by reason and printed; a file where most are rejected, or none is left,
    stops the run: it is not traces of these problems, and training on it would teach falsehoods.
    Example: traces = keep_sound_traces(data.read_traces(f), train, f, print)
    """
    gold = {p.id: p.answer for p in problems}
    kept, rejected, checked, tidied = {}, Counter(), 0, Counter()
    for pid, ts in traces.items():
        for trace in ts if pid in gold else []:  # traces of other problems are not used: nothing to check
            checked += 1
            trace = tidy_trace(trace, tidied)
            reason = trace_verdict(trace, gold[pid])
            if reason:
                rejected[reason] += 1
            else:
                kept.setdefault(pid, []).append(trace)
    if tidied:
        log(f"{path}: rewrote {sum(tidied.values())} traces into the trace format as the teacher writes it "
            f"({', '.join(f'{why} {k}' for why, k in tidied.most_common())})")
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


def tidy_trace(trace, tidied):
    """
    A trace as teacher.py would have written it, counting in tidied what was changed: CRLF (or CR)
    line ends, from a file edited on Windows, become '\\n'; GSM8K's <<48/2=24>> notes, from a
    teacher trained on GSM8K, are written out as equations (replies.write_out_notes), so neither
    is learned as written (--trace-format steps keeps every character of a trace).
    Example: tidy_trace("48/2 = <<48/2=24>>24\\r\\n#### 24", Counter()) == "48 / 2 = 24\\n#### 24"
    """
    if "\r" in trace:
        trace = trace.replace("\r\n", "\n").replace("\r", "\n")
        tidied["CRLF line ends"] += 1
    if ANNOTATION.search(trace):
        trace = write_out_notes(trace)
        tidied["<<a=b>> notes"] += 1
    return trace
