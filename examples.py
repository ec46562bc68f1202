"""
What the student is taught, in tokens: each problem's training targets in a mode (traces.py's
answer and cot targets, ablations.py's filler, shuffled and mixed) as Examples, and the
calculator-aware loss of --mask-results, which skips the results a calculator writes at decoding
(as tool outputs are masked in tool-use fine-tuning). Serves train.py (training and validation
examples) and evaluate.py (the reference targets whose loss is target_loss).

Example:
    make_examples(train, {p.id: [reference_to_trace(p.solution)] for p in train}, "cot", tok, 1337, 40)
"""
import re

import data
from ablations import FILLER, training_targets
from traces import EQ_RHS, arithmetic_before

ABLATIONS = ("filler", "shuffled")  # what a cot target is stripped of: its content (filler), its order (shuffled)

# The filler ablation's count of '.' tokens, per trace format: one fixed number, so that the
# student can learn where the filler ends (matching each trace's own length left it unable to
# stop), close to the mean reference trace at vocabulary 4000 (104 tokens as steps, 44 as
# equations), so about as much extra decoding as cot.
FILLER_TOKENS = {"steps": 100, "equations": 40}


def make_examples(problems, traces, mode, tok, seed, filler_tokens, mask_results=False):
    """
    (task, Example) pairs: each problem's training targets in a mode (ablations.training_targets:
    answer: q -> '#### a'; cot: q -> trace; mixed: both, each behind its task prefix; filler and
    shuffled: the ablations), in tokens. mask_results: the loss skips what the calculator writes.
    Example: make_examples(train, {p.id: [reference_to_trace(p.solution)] for p in train}, "cot", tok, 1337, 40)
    """
    filler_id = tok.encode(FILLER)[-1]
    return [(mode if mode in ABLATIONS else task, target_example(p, target, tok, filler_id, mask_results))  # filed under what they teach
            for p in problems
            for task, target in training_targets(mode, p.answer, traces.get(p.id), f"{seed}-{p.id}", filler_tokens)]


def by_task(pairs):
    """make_examples' (task, Example) pairs grouped as {task: [Example, ...]}."""
    out = {}
    for task, ex in pairs:
        out.setdefault(task, []).append(ex)
    return out


def target_example(p, target, tok, filler_id, mask_results):
    """
    The Example of problem p with a target's pieces tokenized one by one and joined (a FILLER piece
    is the one filler_id); if mask_results, the loss skips the calculator's results in its last piece.
    Example: target_example(p, ["[cot]", "2 * 3 = 6\n#### 6"], tok, tok.encode(".")[-1], True).no_loss
    """
    head = [i for piece in target[:-1] for i in ([filler_id] if piece == FILLER else tok.encode(piece))]
    body = tok.encode(target[-1])
    skip = calculator_positions(tok, target[-1], body) if mask_results else []
    return data.Example(p.id, tok.encode(p.question), head + body, [len(head) + i for i in skip])


def calculator_positions(tok, text, ids):
    """
    Positions in ids (tok.encode(text)) of every result the calculator would write at decoding:
    the number right after an '=' that follows readable arithmetic. A calculator-aware loss skips
    them, as tool outputs are masked in tool-use fine-tuning: the student spends its capacity on
    choosing operands and operations, and the calculator does the arithmetic.
    Example: calculator_positions(tok, "3 * 4 = 12\n#### 12", tok.encode("3 * 4 = 12\n#### 12"))  # the ids of ' 12'
    """
    out = []
    offset = 0
    for line in text.split("\n"):
        for m in re.finditer("=", line):  # the checker's own reading of an equation
            rhs, lhs = EQ_RHS.match(line, m.end()), arithmetic_before(line[:m.start()])
            if rhs is None or lhs is None or lhs[1] is None:
                continue
            before = tok.encode(text[:offset + m.start() + 1])
            through = tok.encode(text[:offset + rhs.end(1)])
            if ids[:len(through)] == through and through[:len(before)] == before:  # the pieces split at '='
                out += range(len(before), len(through))
        offset += len(line) + 1
    return out
