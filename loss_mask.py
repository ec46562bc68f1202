"""
The calculator-aware loss of train.py --mask-results: the positions of the results a calculator
writes at decoding, which the loss then skips (as tool outputs are masked in tool-use
fine-tuning). Serves train.py's target_example; without --mask-results nothing here runs.

Example:
    calculator_positions(tok, "3 * 4 = 12\n#### 12", tok.encode("3 * 4 = 12\n#### 12"))  # the ids of ' 12'
"""
import re

from traces import EQ_RHS, arithmetic_before


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
