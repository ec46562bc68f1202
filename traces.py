"""
Everything about a reasoning trace, in the order a reader needs it:

    the trace format     reference_to_trace, equations_only: one step per line, '#### <answer>' last
    the checker          find_equations, check_trace, trace_verdict: does every equation hold?
    the calculator       Calculator: decoding writes the result after 'a * b ='
    training targets     task_prefix, answer_target, cot_target, decode_budget: what a model learns to write
    scoring              exact_match, arithmetic_error_rate, step_correctness: a student's output, graded

Equations are evaluated exactly by arithmetic.py (text is never executed). Beside this file:
replies.py (a teacher's reply into the trace format), ablations.py (the filler, shuffled and
mixed training targets) and reinstantiate.py (new numbers for a checked trace).
"""
import re
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction

from arithmetic import TOKEN, ArithmeticFault, safe_eval
from data import NUMBER, extract_answer, format_number, normalize_number


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
    except ArithmeticFault:
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
# Training targets: what the student learns to write (train.py --mode answer or cot; the other
# modes are in ablations.py), and how long it may answer.
#
# A target is a list of text pieces that examples.make_examples tokenizes one by one and joins, so
# that a task prefix keeps its own tokens whatever follows it. Its last piece is the reasoning or
# the answer: the part whose calculator results a calculator-aware loss skips.


def task_prefix(task):
    """
    What a multi-task model's output starts with to say which task it does. Decoding forces it
    (model.generate's prefix), so the model cannot do the task it was not asked for: a task written
    as a prefix of the question is one our small students learn to ignore, answering directly when
    asked to reason ('#### N' beats the many ways a trace can start).
    Example: task_prefix("cot") == "[cot]"; task_prefix(None) == ""
    """
    return "" if task is None else f"[{task}]"


ANSWER_TOKENS = 24  # decoding budget when only '#### <answer>' is expected


def decode_budget(mode, task, reasoning_tokens):
    """
    New tokens to allow: a few for an answer-only model or task, the reasoning budget otherwise.
    Example: decode_budget("answer", None, 512) == ANSWER_TOKENS
    """
    return ANSWER_TOKENS if "answer" in (mode, task) else reasoning_tokens


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
    Strict: an output without '####' is never right, whatever its last number (extract_answer's
    fallback to the last number would count it right only where that number happens to be the answer).
    Example: exact_match("3 * 4 = 12\\n#### 12", "12") is True; exact_match("3 * 4 = 12", "12") is False
    """
    return "####" in output and extract_answer(output) == gold
