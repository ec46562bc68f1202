"""
Everything about a reasoning trace, in the order a reader needs it:

    safe arithmetic      safe_eval, ArithmeticParser: + - * / ( ) % over exact fractions; text is never executed
    the trace format     reference_to_trace, equations_only: one step per line, '#### <answer>' last
    the checker          find_equations, check_trace, trace_verdict: does every equation hold?
    a teacher's reply    normalize_reply, validate_trace: an LLM's text into the trace format, kept or why not
    the calculator       Calculator: decoding writes the result after 'a * b ='
    tasks                task_prefix, ways_to_ask, decode_budget: what a model is asked, how long it may answer
    training targets     answer_target, cot_target, filler_target, shuffled_target, mixed_targets: what it learns to write
    scoring              exact_match, arithmetic_error_rate, step_correctness: a student's output, graded
    re-instantiation     Program, variants: new numbers for a checked trace (below)

Re-instantiation: every checked trace is a program over its question's numbers.

Each equation's operands come from the question's numbers, from earlier results, or are constants
that a word of the question explains ("60" with "minutes", "2" with "twice"). Give the question
new numbers, run the program again with exact fractions, write the numbers back into the question
and the trace, and the one solved problem becomes many verified examples at no API cost.

    python traces.py yield                 # how many problems of GSM8K train give variants
    python traces.py seen-stories --out results/seen-stories.jsonl   # the "seen stories, new numbers" set

A wrong example is worse than a missing one, so whenever a number could have come from two places,
or the story could become impossible, the problem gives no variant (None). The rules, each with
the GSM8K case that motivated it:

Bindings (checked once per problem, see Program):
- A question number equal to an earlier result: "She has 12 eggs and uses 6 + 6 = 12" cannot
  tell which 12 a later step reads. Rejected, as are two steps with the same result and a result
  equal to a constant in use.
- A multiplier word equal to a question number: "twice as many as his 2 sisters" makes an
  operand 2 either the sisters or "twice". Rejected (any operand with two possible sources).
- A constant that no word of the question explains: "12 * 4 = 48" where the question never says
  "dozen" is a hidden step in prose. Rejected.
Numbers that must not change (frozen; see freeze_reason):
- 0 and 1; ordinals ("the 2nd day"); times ("3:00", "5 pm"); years ("in 2019"); the parts of a
  fraction ("3/4 of"); a value equal to a unit constant named in the question (7 with "week", 60
  with "minutes"); a value written twice; a number glued to a word; a number no step uses.
Impossible stories (checked on every draw, see Program.sample):
- calendar counts stay in range ("10 days a week"), ages and percentages stay at most 100;
  in a story about ages every number, given or computed, that was at most 100 stays so (a hand
  check found a grandmother of 137 in train-02887), and heights in inches stay at most 90
  (train-01229: 109 inches tall); a result changes by at most 10x (train-05582: the 101st
  floor of a tower became taller than the 100 below it); a number that changes must not also
  be written as a word in the trace ("Two dozens are 2 * 12", train-02657); scores stay at most
  100 (train-04609); two question numbers that add up to a third state a relation no step keeps
  ("$14 and $6 used the entire $20 budget", train-04327): no variant;
  every number, given or computed, keeps its rank among the others (overtime pay stays above
  the regular rate, train-04044); new numbers keep their decimal style and stay positive; every result is non-negative,
  an integer where the original was, with at most 2 decimals otherwise; all numbers stay distinct.
"""
import argparse
import functools
import json
import random
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import data
import files
from data import NUMBER, extract_answer, format_number, normalize_number

# -----------------------------------------------------------------------------
# Safe arithmetic: a recursive-descent parser over exact fractions; text is never executed

MAX_EXPR_CHARS = 200       # longer text is not arithmetic we accept
MAX_MAGNITUDE = 10 ** 15   # any intermediate value beyond this is rejected
TOKEN = re.compile(r"\s*(?:(\d+(?:\.\d*)?|\.\d+)|(.))")


class ArithmeticError_(ValueError):
    """Raised for anything that is not a small, well-formed arithmetic expression."""


def safe_eval(expr):
    """
    Evaluate + - * / with parentheses, decimals, unary minus, postfix % and implicit products
    next to parentheses exactly.
    Example: safe_eval("16 - 3 - 4") == Fraction(9)
    """
    return evaluate_tokens(arithmetic_tokens(expr))


def arithmetic_tokens(expr):
    """
    The tokens of an arithmetic expression: Fractions and the characters + - * / ( ) %.
    Example: arithmetic_tokens("$1,200 * 3") == [Fraction(1200), "*", Fraction(3)]
    """
    expr = expr.replace(",", "").replace("$", "").replace("×", "*").replace("÷", "/")
    if len(expr) > MAX_EXPR_CHARS:
        raise ArithmeticError_(f"expression longer than {MAX_EXPR_CHARS} characters")
    tokens = []
    for num, op in TOKEN.findall(expr):
        if num:
            tokens.append(Fraction(num))
        elif op.strip():
            if op not in "+-*/()%":
                raise ArithmeticError_(f"unexpected {op!r}")
            tokens.append(op)
    return tokens


def evaluate_tokens(tokens):
    """
    The exact value of arithmetic_tokens' output; see safe_eval.
    Example: evaluate_tokens([Fraction(2), "*", "(", Fraction(3), "+", Fraction(4), ")"]) == Fraction(14)
    """
    if not tokens:
        raise ArithmeticError_("empty expression")
    parser = ArithmeticParser(tokens)
    value = parser.expression(0)
    if parser.pos != len(tokens):
        raise ArithmeticError_(f"unexpected {tokens[parser.pos]!r}")
    return value


def within_magnitude(x):
    """x itself, if it is not beyond MAX_MAGNITUDE: every intermediate value is held to it."""
    if abs(x) > MAX_MAGNITUDE:
        raise ArithmeticError_("number too large")
    return x


class ArithmeticParser:
    """
    A recursive-descent parser over arithmetic tokens, one method per level of precedence, loosest
    first: expression (+ -), term (* / and implicit products), unary (signs, postfix %), primary
    (a number, or an expression in parentheses). Each returns the exact value of what it read.
    Example: ArithmeticParser([Fraction(1), "+", Fraction(2), "*", Fraction(3)]).expression(0) == Fraction(7)
    """

    def __init__(self, tokens):
        self.tokens, self.pos = tokens, 0

    def peek(self):
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self):
        self.pos += 1
        return self.tokens[self.pos - 1]

    def implicit_product(self):  # "2(3 + 4)", "(1/2)(20)", "(1/4)24": written by teachers, read as products
        return self.peek() == "(" or (self.pos > 0 and self.tokens[self.pos - 1] == ")" and isinstance(self.peek(), Fraction))

    def expression(self, depth):
        if depth > 20:
            raise ArithmeticError_("nested too deeply")
        x = self.term(depth)
        while self.peek() in ("+", "-"):
            x = within_magnitude(x + self.term(depth) if self.take() == "+" else x - self.term(depth))
        return x

    def term(self, depth):
        x = self.unary(depth)
        while self.peek() in ("*", "/") or self.implicit_product():
            if self.implicit_product() or self.take() == "*":
                x = within_magnitude(x * self.unary(depth))
            else:
                d = self.unary(depth)
                if d == 0:
                    raise ArithmeticError_("division by zero")
                x = within_magnitude(x / d)
        return x

    def unary(self, depth):
        if self.peek() in ("+", "-"):
            return -self.unary(depth) if self.take() == "-" else self.unary(depth)
        x = self.primary(depth)
        while self.peek() == "%":
            self.take()
            x = x / 100
        return x

    def primary(self, depth):
        t = self.take() if self.pos < len(self.tokens) else None
        if isinstance(t, Fraction):
            return within_magnitude(t)
        if t == "(":
            x = self.expression(depth + 1)
            if self.pos >= len(self.tokens) or self.take() != ")":
                raise ArithmeticError_("unbalanced parentheses")
            return x
        raise ArithmeticError_(f"expected a number, got {t!r}")


# -----------------------------------------------------------------------------
# The trace format: one step per line, each computation an explicit equation
# ("16 - 3 - 4 = 9"), and a last line "#### <answer>". Every source of reasoning (the GSM8K
# reference, the LLM teacher, the student) is written in it, so one checker serves them all.

ANNOTATION = re.compile(r"<<([^<>=]*)=([^<>=]*)>>")
# what a writer may have put before an annotation: "0.2 x 50 = $" (arithmetic, then '=')
WRITTEN_LHS = re.compile(r"[\d$(.\-][\d\s.,$+\-*/x×()%]*=\s*\$?\s*$")
SHOWN_RESULT = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?|\$?\.\d+")


def format_expression(expr):
    """Spaces around binary operators: '16-3-4' -> '16 - 3 - 4', '-2*(3+1)' -> '-2 * (3 + 1)'."""
    out, prev = [], None
    for num, op in TOKEN.findall(expr):
        tok = num or op.strip()
        if not tok:
            continue
        binary = tok in "+-*/" and prev is not None and (prev[-1].isdigit() or prev in ")%")
        if tok == "+" and not binary:  # a unary plus says nothing
            continue
        out.append(f" {tok} " if binary else tok)
        prev = tok
    return "".join(out).strip()


def numbers_of(text):
    """The numbers written in text, normalized, signs left out. Example: numbers_of("$1,200 * 3") == ["1200", "3"]"""
    return [normalize_number(n) for n in NUMBER.findall(text)]


def written_lhs_with_units(before, expr):
    """
    The writer's own equation before an annotation when units stand between its numbers
    ("30 dogs * 1/5 = <<30*1/5=6>>"): the match from the annotation's first number to the '=',
    if it holds the annotation's numbers in order within one sentence, else None. Without
    it the trace would read "30 dogs * 30 * 1 / 5 = 6".
    Example: written_lhs_with_units("milk: 16 gallons * 1/4 = ", "16*1/4").group() == "16 gallons * 1/4 = "
    """
    numbers = numbers_of(expr)
    if not numbers or not before.rstrip(" $").endswith("="):
        return None
    for m in reversed(list(re.finditer(r"(?<![\d.,])" + re.escape(NUMBER.findall(expr)[0]) + r"(?![\d])", before))):
        seg = before[m.start():]
        if re.search(r"[:;!?]|\.\s", seg):
            return None
        if numbers_of(seg) == numbers:
            start = m.start()
            # "($600 * 2)/day", "-14 + (-8)": the bracket and the sign are the writer's too
            while start > 0 and (before[start - 1] in "($" or before[start - 1] == "-" == expr.lstrip()[0]):
                start -= 1
            return re.compile(r".*", re.S).match(before, start)
    return None


def reference_to_trace(solution):
    """
    A GSM8K reference solution in the trace format: each <<a*b=c>> annotation becomes the
    written equation 'a * b = c' (replacing the writer's own arithmetic before it, if any),
    so no computation is lost and every one can be checked.
    Example: reference_to_trace("She has 3+4 = <<3+4=7>>7 pens.\\n#### 7") == "She has 3 + 4 = 7 pens.\\n#### 7"
    """
    body, _, final = solution.rpartition("####")
    lines = []
    for line in body.strip().split("\n"):
        out, rest = "", line
        while (m := ANNOTATION.search(rest)):
            before, after = rest[:m.start()], rest[m.end():]
            expr, result = m.group(1).replace("//", "/"), m.group(2).strip()
            lhs = WRITTEN_LHS.search(before)
            if not lhs or numbers_of(lhs.group()) != numbers_of(expr):
                lhs = written_lhs_with_units(before, expr) or lhs
            if lhs and re.search(r"[+\-*/x×]", lhs.group().rstrip("= $")):
                before = before[:lhs.start()]
            elif before:
                before = before.rstrip(" $")
                if before.endswith("-") and expr.lstrip().startswith("-"):  # "-<<-14+-8=-22>>": one sign
                    before = before[:-1]
                before = before + " " if before else ""
            shown = SHOWN_RESULT.match(after)
            if shown and normalize_number(shown.group()) == normalize_number(result):
                after = after[shown.end():]
            out += f"{before}{format_expression(expr)} = {result}"
            rest = after
        line = re.sub(r"\s+", " ", out + rest).strip()
        if line:
            lines.append(line)
    return "\n".join(lines + [f"#### {normalize_number(final) or final.strip()}"])


# the number just right of an '='
EQ_RHS = re.compile(r"\s*\$?\s*((?:-?\d+(?:,\d{3})*(?:\.\d+)?|-?\.\d+)%?)(?![\d,]\d|\d|\.\d|\s*[-+*/(]\s*[\d.($])")
ARITHMETIC_CHARS = frozenset("0123456789 \t.,$+-*/()%")  # what an expression left of '=' is made of
EXPRESSION_START = frozenset("0123456789.(-")            # what its first character may be
UNREADABLE = "?"  # Step.value of an expression that cannot be read whole


@dataclass
class Step:
    line: int        # 0-based line of the trace
    expression: str  # the arithmetic left of '='
    claimed: str     # the number written right of '='
    value: str       # what the expression really is (normalized), UNREADABLE if it cannot be read whole
    ok: bool         # the equation holds (exactly, or to the decimals the writer kept); never if unreadable


def holds(value, claimed):
    """
    claimed equals value exactly, or is value rounded to the decimals claimed shows.
    Example: holds(Fraction(10, 3), "3.33") and not holds(Fraction(10, 3), "3")
    """
    if claimed.endswith("%"):  # "40% + 20% = 60%" and "75 / 100 * 100 = 75%" are both written
        return holds(value * 100, claimed[:-1]) or holds(value, claimed[:-1])
    c = Fraction(claimed.replace(",", ""))
    if c == value:
        return True
    decimals = len(claimed.split(".")[1]) if "." in claimed else 0
    return decimals > 0 and abs(value - c) <= Fraction(1, 2 * 10 ** decimals)


def arithmetic_before(text):
    """
    The arithmetic that text ends with (text being what stands left of an '='), and its value;
    the value is None when the arithmetic cannot be read whole, and the result is None when
    there is no arithmetic (no operator). Linear in the length of text.
    The run of arithmetic characters may start inside a sentence ("On day 2, 3 + 4"): it is cut
    where two numbers stand side by side with no operator between them. It is never cut into
    an operator: reading a suffix of "12 + 12 + ... + 12" would check a different sum. What
    is glued to a word or symbol ("1e3 * 2", "2^3 + 1", "x + 3") cannot be read whole either.
    Example: arithmetic_before("On day 2, 3 + 4 ") == ("3 + 4", Fraction(7))
    """
    # scan back over arithmetic characters; the scan stops at the previous '=', so all the
    # scans of one line together read each character once
    i = len(text)
    while i > 0 and text[i - 1] in ARITHMETIC_CHARS:
        i -= 1
    run = text[i:]
    start = next((k for k, ch in enumerate(run) if ch in EXPRESSION_START and run[k:k + 2] not in (". ", ".")), len(run))
    lead, words = run[:start], run[start:].split()
    if not words:
        return None
    # two operands side by side ("2, 3 + 4") end the prose before the expression
    cut = max((k for k in range(1, len(words)) if words[k - 1][-1] in "0123456789),%."
               and (words[k][0] in "0123456789.($" or re.match(r"-\d", words[k]))), default=0)
    expr = " ".join(words[cut:])
    # parentheses of the prose around the expression: "(3 + 4 = 7)", "(so 3 + 4) = 7"
    while expr.startswith("(") and expr.count("(") > expr.count(")"):
        expr = expr[1:].lstrip()
    while expr.endswith(")") and expr.count(")") > expr.count("("):
        expr = expr[:-1].rstrip()
    # "x + 3", "1e3 * 2", "5x3 + 2", "2^3 + 1": the expression goes on into something we cannot
    # read. A word glued on ("spends25 * 4", a GSM8K typo) is only a missing space.
    word_before = re.search(r"\w*$", text[:i]).group()
    glued = cut == 0 and (re.search(r"[+*/]", lead) or (not lead and (text[i - 1:i] in ("^", "!") or
                                                         len(word_before) == 1 or re.search(r"\d", word_before))))
    if not (glued or re.search(r"\d\s*[-+*/%]|[)%]\s*[-+*/]", expr)):
        return None
    if glued:  # shown whole, so that it stays unreadable wherever it is copied
        return (re.search(r"\S*$", text[:i]).group() + run).strip(), None
    try:
        return expr, safe_eval(expr)
    except ArithmeticError_:
        return expr, None


def find_equations(trace):
    """
    Every 'arithmetic = number' in a trace, evaluated. An expression needs an operator; one that
    cannot be read whole is a step that does not hold (value UNREADABLE), never a true one.
    Example: [s.ok for s in find_equations("3 * 4 = 12 apples\\n12 - 2 = 11")] == [True, False]
    """
    steps = []
    for i, line in enumerate(trace.split("\n")):
        if line.startswith("####"):
            continue
        for m in re.finditer("=", line):
            lhs, rhs = arithmetic_before(line[:m.start()]), EQ_RHS.match(line, m.end())
            if lhs and rhs:
                expr, value = lhs
                if value is None:
                    steps.append(Step(i, expr, rhs.group(1), UNREADABLE, False))
                else:
                    steps.append(Step(i, expr, rhs.group(1), format_number(value), holds(value, rhs.group(1))))
    return steps


TRACE_FORMATS = ("steps", "equations")  # what a reasoning target holds (train.py --trace-format)


def equations_only(trace):
    """
    A trace cut down to its equations, one per line, and its answer line: the arithmetic
    without the words around it (train.py's default --trace-format, for teacher traces as for
    the reference solutions).
    Example: equations_only("She has 3 + 4 = 7 pens.\\nSo 7 * 2 = 14 in all.\\n#### 14") == "3 + 4 = 7\\n7 * 2 = 14\\n#### 14"
    """
    last = trace.strip().split("\n")[-1]
    lines = [f"{s.expression} = {s.claimed}" for s in find_equations(trace)]
    return "\n".join(lines + ([last] if last.startswith("####") else []))


def check_trace(trace):
    """
    Step-by-step check of a trace: the equations and whether each holds (n_wrong counts the
    unreadable among them), the final answer, and whether the trace is well formed (ends with
    '#### <number>').
    Example: check_trace("2 + 2 = 5\\n#### 5")["all_hold"] is False
    """
    steps = find_equations(trace)
    last = trace.strip().split("\n")[-1] if trace.strip() else ""
    return {"steps": steps, "n_steps": len(steps), "n_wrong": sum(not s.ok for s in steps),
            "n_unreadable": sum(s.value == UNREADABLE for s in steps),
            "all_hold": all(s.ok for s in steps), "answer": extract_answer(trace),
            "well_formed": last.startswith("####") and extract_answer(last) is not None}



def trace_verdict(trace, gold, min_equations=1):
    """
    Why a trace must not be trained on, or None if it may: the teacher's checks (validate_trace)
    for a trace already normalized. unparsed: no '#### <number>' last line; wrong_answer: not
    the GSM8K label; false_equation: an equation does not hold; no_equation: fewer than
    min_equations checkable equations (arithmetic in prose can be neither checked nor learned).
    Example: trace_verdict("2 + 2 = 5\\n#### 5", "5") == "false_equation"
    """
    c = check_trace(trace)
    if not c["well_formed"]:
        return "unparsed"
    if c["answer"] != gold:
        return "wrong_answer"
    if not c["all_hold"]:
        return "false_equation"
    if c["n_steps"] < min_equations:
        return "no_equation"
    return None


# -----------------------------------------------------------------------------
# A teacher's reply: normalized into the trace format, then validated

ANSWER_PHRASE = re.compile(r"\banswer\s*(?:is|was|would be|will be|:|=)\s*:?\s*\$?\s*(-?\d[\d,]*(?:\.\d+)?|-?\.\d+)",
                           re.IGNORECASE)


def tidy_note(m):
    """
    One <<expr=result>> calculator note (and the number written after it) made ready for
    reference_to_trace, for notes that models sampled with a calculator wrote: a result printed
    as a float's full repr is rounded to 6 decimals (17.142857142857142 claims 15 exact decimals,
    and the checker holds a claim to the decimals it shows), and another number written after
    the note is kept apart from its result (else '<<9300/125=74.4>>74' becomes '= 74.474').
    Example: tidy_note(re.match(r"<<(.*)=(.*)>>(\\d+)?", "<<120/7=17.142857142857142>>17")) == "<<120/7=17.142857>> 17"
    """
    expr, result, shown = m.group(1), m.group(2), m.group(3)
    same = shown is not None and normalize_number(shown) == normalize_number(result)
    if re.fullmatch(r"\s*-?\d+\.\d{10,}\s*", result):
        result = f"{float(result):.6f}".rstrip("0").rstrip(".")
    return f"<<{expr}={result}>>" + (result if same else f" {shown}" if shown else "")


def normalize_reply(text):
    """
    A reply in the trace format: GSM8K's <<a*b=c>> annotations written as equations, markdown and
    LaTeX dropped, x × ÷ − written * / -, one step per line without stray whitespace, and a closing
    "The answer is N" (or \\boxed{N}) turned into '#### N' when it is the only answer the reply
    states. Whatever follows the '#### N' line is dropped.
    Example: normalize_reply("**1.** 3 × 4 = 12\\n\\nThe answer is 12.") == "3 * 4 = 12\\n#### 12"
    """
    t = text.replace("\r\n", "\n")
    if ANNOTATION.search(t):  # GSM8K's <<48/2=24>> calculator notes, as models trained on GSM8K write them
        t = re.sub(r"<<([^<>=]*)=([^<>=]*)>>(-?\$?\d[\d,]*(?:\.\d+)?)?", tidy_note, t)
        t = reference_to_trace(t + "\n#### 0").rsplit("\n", 1)[0]  # '#### 0': a last line for it to cut, dropped
    # \frac{a}{b} -> (a / b), whole, so '27 \div \frac{3}{4}' stays 27 / (3 / 4); inner fractions first
    frac = r"\\frac\{([^{}]*)\}\{([^{}]*)\}"
    while re.search(frac, t):
        t = re.sub(frac, lambda m: "(" + " / ".join(x.strip() if re.fullmatch(r"[\d.,]+|\(.*\)", x.strip()) else f"({x.strip()})"
                                                     for x in m.groups()) + ")", t)
    t = re.sub(r"\\(?:text|mathrm)\{([^{}]*)\}", r"\1", t)
    for a, b in [("\\times", "*"), ("\\cdot", "*"), ("\\div", "/"), ("\\$", "$"), ("\\%", "%"), ("$$", ""),
                 ("\\(", ""), ("\\)", ""), ("\\[", ""), ("\\]", ""), ("×", "*"), ("÷", "/"), ("⋅", "*"),
                 ("−", "-"), ("\u00a0", " "), ("**", ""), ("__", ""), ("`", "")]:
        t = t.replace(a, b)
    # the checker only sees * as multiplication: "3 x 4 = 12" would escape it, false or not
    t = re.sub(r"(?<=[\d)])\s*[xX]\s*(?=[\d($])", " * ", t)
    boxed = [normalize_number(b) for b in re.findall(r"\\boxed\{([^{}]*)\}", t)]  # how math-tuned models answer
    t = re.sub(r"\\boxed\{([^{}]*)\}", r"\1", t)
    # "... 72 clips. #### 72" -> its own line; a '####' before words is a markdown heading, not an answer
    t = re.sub(r"[ \t]*####[ \t]*(?=-?\$?\s*\.?\d)", "\n#### ", t)
    lines = []
    for line in t.split("\n"):
        line = re.sub(r"^\s*(?:####(?!\s*-?\$?\s*\.?\d)|#{1,3}(?!#)|#{5,6}|>|[-*+](?=\s)|\d+[.)](?=\s))", "",
                      line)  # headings, quotes, lists
        line = re.sub(r"\s+", " ", line).strip()
        if line:
            lines.append(line)
    final = next((i for i, line in enumerate(lines) if line.startswith("####")), None)
    if final is not None:
        answer = extract_answer(lines[final])
        return "\n".join(lines[:final] + [f"#### {answer}" if answer is not None else lines[final]])
    # no '####': take a closing "The answer is N" (or \boxed{N}) only if every stated answer agrees
    stated = {normalize_number(m.group(1)) for m in ANSWER_PHRASE.finditer("\n".join(lines))} | set(boxed)
    m = ANSWER_PHRASE.search(lines[-1]) if lines else None
    if (m or boxed) and len(stated) == 1 and None not in stated:
        answer = stated.pop()
        rest = lines[-1][:m.start()] + lines[-1][m.end():] if m else lines[-1]
        if not re.search(r"\d", rest) or normalize_number(lines[-1]) == answer:  # the line said nothing else
            lines = lines[:-1]
        return "\n".join(lines + [f"#### {answer}"])
    return "\n".join(lines)


def validate_trace(text, finish_reason, gold, min_equations=1):
    """
    Normalize a reply and decide whether to keep it: (trace, None) if accepted, else
    (trace, reason) with reason one of truncated, unparsed, wrong_answer, false_equation, no_equation.
    Example: validate_trace("2 + 2 = 5\\n#### 5", "stop", "5") == ("2 + 2 = 5\\n#### 5", "false_equation")
    """
    trace = normalize_reply(text)
    if finish_reason == "length":  # a cut-off reply may still end in a number: never trust it
        return trace, "truncated"
    return trace, trace_verdict(trace, gold, min_equations)  # the checks train.py --traces applies too


# -----------------------------------------------------------------------------
# Calculator: the model writes "48 / 2 =", the evaluator writes " 24"


class Calculator:
    """
    Calculator-augmented decoding (as in the GSM8K paper): when a sequence has just written
    '=' after arithmetic in its current step, the expression is computed with safe_eval and
    the result's tokens are returned to be forced into that sequence. Counts how often it fired.
    Example: calc = Calculator(tok); model.generate(src, 256, calculator=calc); calc.fired
    """

    def __init__(self, tokenizer):
        self.tok = tokenizer
        self.trigger_ids = {i for i in range(tokenizer.vocab_size) if tokenizer.piece(i).endswith("=")}
        self.fired = 0

    def __call__(self, tokens):
        text = self.tok.decode(tokens)
        line = text.rsplit("\n", 1)[-1]
        lhs = arithmetic_before(line[:-1]) if line.endswith("=") else None  # the checker's own rule
        if lhs is None or lhs[1] is None:  # nothing to compute, or nothing it can read whole
            return []
        value = lhs[1]
        # tokenize the line with its result, so the pieces are the ones training text had
        full = self.tok.encode(text + " " + format_number(value, 2))
        if full[:len(tokens)] != list(tokens):
            return []
        self.fired += 1
        return full[len(tokens):]


# -----------------------------------------------------------------------------
# Tasks: what a model is asked to do, and how long it may answer


def task_prefix(task):
    """
    What a multi-task model's output starts with to say which task it does. Decoding forces it
    (model.generate's prefix), so the model cannot do the task it was not asked for: when the task
    was a prefix of the question instead, our small students learned to ignore it and answered
    directly when asked to reason ('#### N' beats the many ways a trace can start).
    Example: task_prefix("cot") == "[cot]"; task_prefix(None) == ""
    """
    return "" if task is None else f"[{task}]"


ANSWER_TOKENS = 24  # decoding budget when only '#### <answer>' is expected


def ways_to_ask(mode):
    """
    The tasks a model trained in a mode is asked with: a mixed model both ways (by its task
    prefix), every other model once, with no prefix (task None).
    Example: ways_to_ask("mixed") == ["cot", "answer"]
    """
    return ["cot", "answer"] if mode == "mixed" else [None]


def decode_budget(mode, task, reasoning_tokens):
    """
    New tokens to allow: a few for an answer-only model or task, the reasoning budget otherwise.
    Example: decode_budget("answer", None, 512) == ANSWER_TOKENS
    """
    return ANSWER_TOKENS if "answer" in (mode, task) else reasoning_tokens


# -----------------------------------------------------------------------------
# Training targets: what the student learns to write, one function per mode (train.py --mode)
#
# A target is a list of text pieces that train.make_examples tokenizes one by one and joins, so
# that a task prefix keeps its own tokens whatever follows it. Its last piece is the reasoning or
# the answer: the part whose calculator results a calculator-aware loss skips.

FILLER = "."  # the filler ablation's token; train.py writes it as the single '.' piece ('.' alone encodes as '▁' '.')


def answer_target(answer, task=None):
    """
    The answer alone, '#### <answer>', behind the task prefix when the model is asked by task.
    Example: answer_target("18") == ["#### 18"]; answer_target("18", "answer") == ["[answer]", "#### 18"]
    """
    return [task_prefix(task)] * (task is not None) + [f"#### {answer}"]


def cot_target(trace, task=None):
    """
    The reasoning trace, then its answer line (the trace ends with it), behind the task prefix when asked by task.
    Example: cot_target("3 * 6 = 18\n#### 18", "cot") == ["[cot]", "3 * 6 = 18\n#### 18"]
    """
    return [task_prefix(task)] * (task is not None) + [trace]


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


# -----------------------------------------------------------------------------
# Scoring a student's output


def step_values(trace):
    """The values a trace writes down as results of its equations, in order (normalized)."""
    return [normalize_number(s.claimed) for s in check_trace(trace)["steps"]]


def arithmetic_error_rate(outputs):
    """
    How much of the written arithmetic is false: equations that do not hold over all equations,
    and problems with at least one false equation over all problems.
    Example: arithmetic_error_rate(["2 + 2 = 5\\n#### 5", "#### 4"])["problem_error_rate"] == 0.5
    """
    checks = [check_trace(o) for o in outputs]
    eqs, wrong = sum(c["n_steps"] for c in checks), sum(c["n_wrong"] for c in checks)
    bad = sum(c["n_wrong"] > 0 for c in checks)
    return {"equations": eqs, "wrong_equations": wrong, "equation_error_rate": wrong / eqs if eqs else None,
            "problems": len(checks), "problems_with_wrong": bad, "problem_error_rate": bad / len(checks) if checks else None}


def step_correctness(output_trace, reference_trace):
    """
    Intermediate values the output writes (right of each '=') against those of the reference,
    as multisets: precision = matched / output values, recall = matched / reference values
    (None when there is nothing to divide by). What was written counts, not what the left side
    really equals: a student that writes 5 * 4 = 21 and carries 21 on has computed 21.
    Example: step_correctness("5 * 4 = 20\\n20 + 1 = 22", "5 * 4 = 20\\n20 + 1 = 21")["precision"] == 0.5
    """
    out, ref = Counter(step_values(output_trace)), Counter(step_values(reference_trace))
    m, n_out, n_ref = sum((out & ref).values()), sum(out.values()), sum(ref.values())
    return {"matched": m, "n_output": n_out, "n_reference": n_ref,
            "precision": m / n_out if n_out else None, "recall": m / n_ref if n_ref else None}


def exact_match(output, gold):
    """
    Whether a student's output gets the problem right: the number after its last '####' is the
    gold answer. The one rule of train.py's model selection and test score and of evaluate.py.
    Strict: an output without '####' is never right, whatever its last number. (With
    extract_answer's fallback to the last number, such an output was right on the problems where
    that number happened to be the answer and malformed on all the others.)
    Example: exact_match("3 * 4 = 12\\n#### 12", "12") is True; exact_match("3 * 4 = 12", "12") is False
    """
    return "####" in output and extract_answer(output) == gold


# -----------------------------------------------------------------------------
# Re-instantiation: new numbers for a checked trace

# a number as written: "1,200", "3.5", ".75"; never a piece of a longer number
WRITTEN_NUMBER = re.compile(r"(?<![\d.,])(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)(?![\d])")

# constants a word of the question explains: (value, the words). Matched as whole words, any case.
CONSTANT_WORDS = [
    (2, r"twice|double[ds]?|half|halves|pairs?|couples?|both|twins?|two|weekends?|halved"),
    (3, r"triple[ds]?|thrice|three|thirds?|yards?"), (4, r"quadruple[ds]?|four|fourths?|quarters?|quarts?|gallons?"),
    (5, r"five|fifths?|nickels?"), (6, r"six|sixths?"), (7, r"seven|weeks?|weekly"), (8, r"eight|eighths?"),
    (9, r"nine"), (10, r"ten|tenths?|dimes?|decades?"), (11, r"eleven"), (12, r"twelve|dozens?|months?|years?|feet|foot|inch(?:es)?"),
    (15, r"fifteen"), (16, r"sixteen|pounds?|ounces?"), (20, r"twenty|score"), (24, r"hours?|days?|daily"),
    (25, r"quarters?"), (30, r"thirty|months?"), (36, r"yards?"), (52, r"weeks?|years?"), (60, r"sixty|minutes?|hours?|seconds?"),
    (100, r"hundred|percent|cents?|dollars?|centimet(?:er|re)s?|meters?|century|centuries"), (365, r"years?"),
    (1000, r"thousand|kilo\w*|grams?|liters?|litres?|millilit\w*|milli\w*"), (1000000, r"million"),
    (Fraction(1, 2), r"half|halves|halved"), (Fraction(1, 4), r"quarters?"), (Fraction(1, 10), r"dimes?|tenths?"),
    (Fraction(1, 20), r"nickels?"), (Fraction(1, 100), r"pennies|penny|cents?"),
]
# numbers written as words: a changed number must not also be written this way in the trace
NUMBER_WORDS = {w: i for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve thirteen "
                                           "fourteen fifteen sixteen seventeen eighteen nineteen twenty".split())}
NUMBER_WORDS.update({"thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90,
                     "hundred": 100, "thousand": 1000, "dozen": 12, "half": 2, "twice": 2, "double": 2, "triple": 3})
# what a count followed by this word may be at most, if the question names the larger unit
CAPS = [(r"days?", r"\bweeks?\b", 7), (r"hours?", r"\bdays?\b", 24), (r"months?", r"\byears?\b", 12),
        (r"minutes?", r"\bhours?\b", 60), (r"seconds?", r"\bminutes?\b", 60), (r"%|percent", None, 100),
        (r"years?[- ]old|-year-old", None, 100), (r"points?|marks?", r"\btests?\b|\bexams?\b|\bquiz", 100)]
# stories whose every number, given or computed, has a bound if it had one before: (the story, the bound)
STORY_CAPS = [(r"\bages?\b|years? old|\bolder\b|\byounger\b|\bborn\b", 100),       # nobody is 137
              (r"\bscor(?:e|es|ed|ing)\b|\bgrades?\b|\bquiz", 100),                   # scores out of 100 (train-04609)
              (r"(?=.*\binch(?:es)?\b)(?=.*\b(?:tall|height|heights)\b)", 90)]  # nor 109 inches tall
MAX_RESULT_CHANGE = 3  # a result more than 3x larger or smaller than before is another story (GSM8K
                       # train-05582: a 101st floor taller than the 100 below it; train-06211: a 120 m tree)
KEEP_ALL_ORDERS = True  # every pair of numbers, given or computed, keeps its order (see Program.sample)


@dataclass
class Number:
    start: int      # where it is written in the text
    end: int
    text: str       # as written: "1,200"
    value: Fraction


def numbers_in(text):
    """
    Every number written in text, with its place and exact value.
    Example: [n.value for n in numbers_in("$1,200 and 3.5")] == [Fraction(1200), Fraction(7, 2)]
    """
    return [Number(m.start(), m.end(), m.group(), Fraction(m.group().replace(",", ""))) for m in WRITTEN_NUMBER.finditer(text)]


def explained_constants(question):
    """The constants that some word of the question explains, with 1 (one of anything) always."""
    q = question.lower()
    found = {Fraction(1)} | {Fraction(v) for v, words in CONSTANT_WORDS if re.search(rf"\b(?:{words})\b", q)}
    if "%" in q:
        found.add(Fraction(100))
    return found


def freeze_reason(question, n, constants, repeated):
    """
    Why a question number must keep its value, or None if it may change.
    Example: freeze_reason("On the 2nd day", numbers_in("On the 2nd day")[0], set(), set()) == "ordinal"
    """
    before, after = question[:n.start], question[n.end:]
    if n.value in (0, 1):
        return "0 or 1"
    if re.match(r"(?:st|nd|rd|th)\b", after):
        return "ordinal"
    if re.match(r":\d|\s*(?:am|pm|a\.m\.|p\.m\.|o'clock)\b", after, re.I) or before.endswith(":"):
        return "time"
    if n.value.denominator == 1 and 1800 <= n.value <= 2100 and "," not in n.text and not before.endswith("$"):
        return "year"
    if after.startswith("/") or before.endswith("/"):
        return "fraction"
    if before[-1:].isalpha() or re.match(r"[a-zA-Z]", after) or before.endswith("-") and before[-2:-1].isalnum():
        return "glued to a word"
    if n.value in constants and n.value != 1:
        return "unit constant"
    if n.value in repeated:
        return "written twice"
    return None


def cap_of(question, n):
    """The largest value this count may take in its story (a week has 7 days), or None."""
    after = question[n.end:n.end + 20].lstrip(" $")
    for word, needs, cap in CAPS:
        if re.match(rf"(?:{word})", after, re.I) and (needs is None or re.search(needs, question, re.I)):
            return cap
    return None


def decimals(text):
    return len(text.split(".")[1]) if "." in text else 0


@functools.lru_cache(maxsize=1 << 16)
def write_number(value, like):
    """
    value written in the style of the number like: its decimals (at least), its thousands commas.
    None if value needs more than 6 decimals. Example: write_number(Fraction(5, 2), "1.50") == "2.50"
    """
    places = next((d for d in range(7) if (value * 10 ** d).denominator == 1), None)
    if places is None:
        return None
    places = max(places, decimals(like)) if places or decimals(like) else 0
    scaled = value * 10 ** places
    whole, frac = divmod(int(scaled), 10 ** places) if places else (int(scaled), 0)
    head = f"{whole:,}" if "," in like else str(whole)
    return f"{head}.{frac:0{places}d}" if places else head


class Program:
    """
    A checked trace read as a program over its question's numbers, or the reason it cannot be.
    Example: p = Program("Tom has 5 apples and buys 3 more. How many?", "5 + 3 = 8\\n#### 8"); p.reason is None
    """

    def __init__(self, question, trace):
        self.question, self.trace, self.reason = question, trace, None
        try:
            self._read()
        except Rejected as e:
            self.reason = str(e)

    def _read(self):
        c = check_trace(self.trace)
        if not (c["well_formed"] and c["all_hold"] and c["n_steps"]):
            raise Rejected("trace does not check")
        if any(s.claimed.endswith("%") for s in c["steps"]):
            raise Rejected("a result written as a percentage")
        self.constants = explained_constants(self.question)
        qnums = numbers_in(self.question)
        qvalues = [n.value for n in qnums]
        repeated = {v for v in qvalues if qvalues.count(v) > 1}
        qvalues = set(qvalues)
        self.steps = [arithmetic_tokens(s.expression) for s in c["steps"]]  # operands are the Fractions
        self.results = [evaluate_tokens(t) for t in self.steps]
        if len(set(self.results)) < len(self.results):
            raise Rejected("two steps give the same value")
        if set(self.results) & qvalues:
            raise Rejected("a question number equals a result")
        if set(self.results) & self.constants:
            raise Rejected("a result equals a constant")
        used = set()
        for j, tokens in enumerate(self.steps):
            for x in tokens:
                # a question number that a word also explains ("his 2 sisters" and "twice") is
                # frozen below, so that whichever the step meant, its value stays right
                if isinstance(x, Fraction) and x not in qvalues and x not in self.results[:j] and x not in self.constants:
                    raise Rejected(f"constant {format_number(x)} that no word of the question explains")
                used.add(x)
        self.answer = Fraction(c["answer"])
        if self.answer not in set(self.results) | qvalues:
            raise Rejected("the answer is not a computed value")
        self.trace_numbers = numbers_in(self.trace)  # every one is rewritten, so every one needs a known source
        for n in self.trace_numbers:
            if n.value not in qvalues and n.value not in self.results and n.value not in self.constants:
                raise Rejected(f"trace number {n.text} of unknown source")
        self.free, self.frozen = [], []
        for n in qnums:
            reason = freeze_reason(self.question, n, self.constants, repeated) or (None if n.value in used else "unused")
            (self.frozen if reason else self.free).append(n)
        if not self.free:
            raise Rejected("no number may change")
        if hidden_relation(qnums, self.free):
            raise Rejected("the question's numbers hold a relation the trace does not compute")
        # "Two dozens are 2 * 12 = 24": the digit would change, the word would not (train-02657)
        words = {NUMBER_WORDS[w] for w in re.findall(r"[a-z]+", self.trace.lower()) if w in NUMBER_WORDS}
        if words & {n.value for n in self.free}:
            raise Rejected("a changed number is also written as a word in the trace")
        self.caps = [(n.value, cap) for n in self.free if (cap := cap_of(self.question, n)) is not None]
        # the story's numbers keep their ranking: given ones before the chain is run, all after
        given = sorted({n.value for n in qnums})
        every = sorted(set(given) | set(self.results))
        self.given_pairs = list(zip(given, given[1:])) if KEEP_ALL_ORDERS else []
        self.all_pairs = list(zip(every, every[1:])) if KEEP_ALL_ORDERS else []
        self.fixed = {n.value for n in self.frozen} | self.constants
        self.story_cap = min((cap for story, cap in STORY_CAPS if re.search(story, self.question, re.I | re.S)), default=None)

    def sample(self, rng):
        """One new (question, trace), or None if this draw broke a rule of the story or of the arithmetic."""
        new = {k: k for k in self.fixed}
        for n in self.free:
            new[n.value] = draw_like(n, rng)
        if any(new[v] > cap for v, cap in self.caps) or any(new[a] >= new[b] for a, b in self.given_pairs):
            return None
        for tokens, old in zip(self.steps, self.results):
            try:
                v = evaluate_tokens([new[t] if isinstance(t, Fraction) else t for t in tokens])
            except ArithmeticError_:
                return None
            if v < 0 or (old.denominator == 1 and v.denominator != 1) or (v * 100).denominator != 1:
                return None
            if not old / MAX_RESULT_CHANGE <= v <= old * MAX_RESULT_CHANGE:
                return None
            new[old] = v
        if self.story_cap is not None and any(new[v] > self.story_cap >= v for v in [n.value for n in self.free] + self.results):
            return None
        if any(new[a] >= new[b] for a, b in self.all_pairs):
            return None  # overtime pay stays above the regular rate; the one who "one-ups" everyone pays the most
        values = [new[n.value] for n in self.free] + [new[r] for r in self.results]
        if len(set(values)) < len(values) or not self.fixed.isdisjoint(values):
            return None  # the new numbers must be as unambiguous as the old
        question, trace = rewrite(self.question, self.free, new), rewrite(self.trace, self.trace_numbers, new)
        if question is None or trace is None or question == self.question:
            return None
        c = check_trace(trace)  # the promise: every variant checks, whatever went before
        if not (c["all_hold"] and c["well_formed"] and c["n_steps"] == len(self.steps)) or Fraction(c["answer"]) != new[self.answer]:
            return None
        return question, trace


def hidden_relation(numbers, free):
    """
    Whether two of the question's numbers add up to, or differ by, a third while one of the
    three may change: "a $14 ticket and $6 of food used their entire $20 budget" (train-04327)
    states 14 + 6 = 20 in words, and no trace step would keep it true.
    Example: hidden_relation(numbers_in("14 and 6 make 20"), numbers_in("14 and 6 make 20")[:1]) is True
    """
    values = [n.value for n in numbers]
    changing = {n.value for n in free}
    for i, a in enumerate(values):
        for j, b in enumerate(values):
            if i < j and a + b in values and {a, b, a + b} & changing and a + b not in (a, b):
                return True
    return False


class Rejected(Exception):
    """A trace that cannot be read as a program without ambiguity."""


def draw_like(n, rng):
    """
    A new value in the style of number n: the same decimals and trailing zeros, within about
    half to twice its size, never 0 or 1. Example: draw_like(numbers_in("500")[0], random.Random(0)) % 100 == 0
    """
    places = decimals(n.text)
    scaled = int(n.value * 10 ** places)
    zeros = 0
    while places == 0 and scaled % 10 ** (zeros + 1) == 0:
        zeros += 1
    base = scaled // 10 ** zeros
    lo = max(2, base // 2)
    hi = max(base * 2, lo + 3)
    return Fraction(rng.randint(lo, hi) * 10 ** zeros, 10 ** places)


def rewrite(text, numbers, new):
    """text with each of numbers (found in it by numbers_in) written with its new value, in its own style."""
    out, last = [], 0
    for n in numbers:
        written = write_number(new[n.value], n.text)
        if written is None:
            return None
        out += [text[last:n.start], written]
        last = n.end
    return "".join(out) + text[last:]


def reinstantiate(question, trace, rng):
    """
    The problem with new numbers, its trace recomputed exactly: (new_question, new_trace), or None
    when a binding is ambiguous, the story would break, or this draw failed its checks.
    Example: reinstantiate("Tom has 5 apples and buys 3 more. How many?", "5 + 3 = 8\\n#### 8", random.Random(1))
    """
    program = Program(question, trace)
    return None if program.reason else program.sample(rng)


MAX_TRIES = 200  # draws per problem at most: past that, the rare variant is not worth the time
GIVE_UP_AFTER = 50  # draws without a single variant: this problem's story is too tight


def variants(question, trace, k, rng):
    """
    Up to k distinct verified variants of one problem, the original first.
    Example: variants(q, t, 4, random.Random(0))  # [(q, t), (q2, t2), ...]
    """
    out, seen = [(question, trace)], {question}
    program = Program(question, trace)
    if program.reason or k <= 1:
        return out
    for tries in range(min(MAX_TRIES, 8 * (k - 1))):
        if tries == GIVE_UP_AFTER and len(out) == 1:
            break
        v = program.sample(rng)
        if v and v[0] not in seen:
            seen.add(v[0])
            out.append(v)
            if len(out) == k:
                break
    return out


# -----------------------------------------------------------------------------
# The seen-stories evaluation set


def write_seen_stories(train, n, seed, out):
    """
    The "seen stories, new numbers" evaluation set: one variant each of n train problems, drawn
    with a seed of its own, as JSONL {id, story, question, answer} that evaluate.py --eval-file
    reads (answer: the recomputed trace). train.py never trains on these questions.
    Example: write_seen_stories(data.load_gsm8k("train"), 500, 2027, "results/seen-stories/seen-stories.jsonl")
    """
    rng = random.Random(seed)
    rows = []
    for p in rng.sample(train, len(train)):
        program = Program(p.question, equations_only(reference_to_trace(p.solution)))
        v = None if program.reason else next((v for v in (program.sample(rng) for _ in range(MAX_TRIES)) if v), None)
        if v:
            rows.append({"id": f"seen-{p.id}", "story": p.id, "question": v[0], "answer": v[1]})
        if len(rows) == n:
            break
    rows.sort(key=lambda r: r["id"])
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    files.write_atomic(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    print(f"wrote {len(rows)} variants of train stories to {out} (seed {seed}; sha256 {files.sha256_file(out)[:16]})")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["yield", "seen-stories", "show"], help="yield: figures on GSM8K train; seen-stories: write the evaluation set; show: print variants of a few problems")
    parser.add_argument("--data-dir", default=None, help="GSM8K folder (default: $GSM8K_DIR, else data/gsm8k)")
    parser.add_argument("--k", type=int, default=64, help="variants wanted per problem (yield, show)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: 1337; seen-stories: 2027, which no training run uses)")
    parser.add_argument("--n", type=int, default=500, help="seen-stories: problems in the set; show: problems shown")
    parser.add_argument("--out", default="results/seen-stories/seen-stories.jsonl", help="seen-stories: where to write the set")
    args = parser.parse_args(argv)
    train = data.load_gsm8k("train", args.data_dir)
    if args.seed is None:
        args.seed = 2027 if args.command == "seen-stories" else 1337
    if args.command == "yield":
        t0 = time.time()
        counts, reasons = [], {}
        for i, p in enumerate(train):
            rng = random.Random(f"{args.seed}-{p.id}")
            prog = Program(p.question, reference_to_trace(p.solution))
            if prog.reason:
                key = re.sub(r"[\d.]+", "N", prog.reason)
                reasons[key] = reasons.get(key, 0) + 1
            counts.append(len(variants(p.question, reference_to_trace(p.solution), args.k, rng)) - 1)
            if (i + 1) % 1000 == 0:
                print(f"{i + 1}/{len(train)} problems, {time.time() - t0:.0f} s", file=sys.stderr)
        n = len(counts)
        print(f"{n} train problems, k={args.k}, {time.time() - t0:.0f} s")
        for at_least in (1, 10, 50):
            print(f"  with at least {at_least} new variants: {sum(c >= at_least for c in counts)} ({sum(c >= at_least for c in counts) / n:.1%})")
        print(f"  new variants in all: {sum(counts)}")
        for r, k in sorted(reasons.items(), key=lambda x: -x[1])[:12]:
            print(f"  rejected: {r}: {k}")
    elif args.command == "seen-stories":
        write_seen_stories(train, args.n, args.seed, args.out)
    elif args.command == "show":
        rng = random.Random(args.seed)
        for p in rng.sample(train, args.n):
            got = variants(p.question, reference_to_trace(p.solution), 2, random.Random(f"{args.seed}-{p.id}"))
            for label, (q, t) in zip(("original", "variant"), got if len(got) > 1 else []):
                print(f"== {p.id} ({label})\n{q}\n{t}\n")
            if len(got) == 1:
                print(f"== {p.id}: no variant ({Program(p.question, reference_to_trace(p.solution)).reason or 'no draw passed'})\n")


if __name__ == "__main__":
    main()
