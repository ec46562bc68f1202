"""
The training targets of the ablation modes (filler, shuffled) and of the mixed multi-task mode,
and training_targets, which gives any mode's targets (train.py --mode). Serves train.py and
evaluate.py (ways_to_ask); the answer and cot targets themselves are in traces.py.

    filler     as many '.' tokens as a trace, then the answer: decoding time with nothing computed
    shuffled   the trace's steps in a random order: its tokens without its structure
    mixed      one model trained on both tasks, '[cot]' and '[answer]', asked either way
"""
import random

from traces import answer_target, cot_target

FILLER = "."  # the filler ablation's token; train.py writes it as the single '.' piece ('.' alone encodes as '▁' '.')


def shuffled_target(trace, seed):
    """
    The same steps in a random order, the answer line kept last: the tokens without the structure.
    Example: shuffled_target("1 + 1 = 2\n2 * 3 = 6\n#### 6", "1337-train-00001-0")
    """
    *steps, last = trace.split("\n")
    random.Random(seed).shuffle(steps)
    return ["\n".join(steps + [last])]


def filler_target(answer, n):
    """
    n filler tokens, then '#### <answer>': about as much decoding as a trace, with nothing computed in it.
    Example: filler_target("18", 3) == [".", ".", ".", "#### 18"]
    """
    return [FILLER] * n + answer_target(answer)


def mixed_targets(answer, traces):
    """
    The mixed task: every trace behind '[cot]', and the answer alone behind '[answer]', so that one model
    learns both and is asked either way (ways_to_ask).
    Example: mixed_targets("6", ["2 * 3 = 6\n#### 6"]) == [("cot", ["[cot]", "2 * 3 = 6\n#### 6"]), ("answer", ["[answer]", "#### 6"])]
    """
    return [("cot", cot_target(t, "cot")) for t in traces] + [("answer", answer_target(answer, "answer"))]


def training_targets(mode, answer, traces, seed, filler_tokens):
    """
    The (task, target) pairs one problem gives in a mode: one per trace of the problem (traces: its
    list, None if it has none at all), and in answer mode one alone. seed names the problem's own
    shuffle stream; filler_tokens: the filler's length.
    Example: training_targets("cot", "6", ["2 * 3 = 6\n#### 6"], "1337-train-00001", 40) == [("cot", ["2 * 3 = 6\n#### 6"])]
    """
    if mode == "answer":
        return [("answer", answer_target(answer))]
    if traces is None:
        return []
    if mode == "mixed":
        return mixed_targets(answer, traces)
    if mode == "cot":
        return [("cot", cot_target(t)) for t in traces]
    if mode == "shuffled":
        return [("cot", shuffled_target(t, f"{seed}-{k}")) for k, t in enumerate(traces)]
    if mode == "filler":
        return [("cot", filler_target(answer, filler_tokens)) for _ in traces]
    raise ValueError(f"unknown mode {mode!r}")


def ways_to_ask(mode):
    """
    The tasks a model trained in a mode is asked with: a mixed model both ways (by its task
    prefix), every other model once, with no prefix (task None).
    Example: ways_to_ask("mixed") == ["cot", "answer"]
    """
    return ["cot", "answer"] if mode == "mixed" else [None]
