"""traces.py and arithmetic.py: the trace format, safe arithmetic, the checker, the calculator and the scores of a
student's output against exact oracles and the real GSM8K references."""
import collections
from fractions import Fraction

import pytest

import arithmetic
import data
import replies
import traces


def test_reference_solutions_give_gold_answers(gsm8k_dir):
    for split, n in (("train", 7473), ("test", 1319)):
        rows = data.read_jsonl(gsm8k_dir / f"{split}.jsonl")
        assert len(rows) == n
        for row in rows:
            gold = row["answer"].rsplit("####", 1)[1].strip().replace(",", "")
            assert data.extract_answer(row["answer"]) == gold
            assert data.extract_answer(traces.reference_to_trace(row["answer"])) == gold


# ----------------------------------------------------------------------------- arithmetic

@pytest.mark.parametrize("expr,value", [
    ("16 - 3 - 4", 9), ("2 + 3 * 4", 14), ("(2 + 3) * 4", 20), ("-3 * -2", 6), ("20% * 50", 10),
    ("10 / 4", Fraction(5, 2)), ("0.1 + 0.2", Fraction(3, 10)), ("1,000 + 5", 1005), ("$12 / .5", 24),
    ("2 × 3 ÷ 4", Fraction(3, 2)), ("- (1 - 4)", 3),
])
def test_safe_eval_values(expr, value):
    assert arithmetic.safe_eval(expr) == value


@pytest.mark.parametrize("expr", [
    "__import__('os')", "2 ** 3", "1 / 0", "3 +", "(1 + 2", "1 + 2)", "", "x * 2", "9" * 1001 + " * 9",
    "(" * 30 + "1" + ")" * 30, "1+" * 150 + "1", "1e9",
])
def test_safe_eval_rejects(expr):
    with pytest.raises(ValueError):
        arithmetic.safe_eval(expr)


def test_check_trace_steps():
    c = traces.check_trace("He has 3 * 4 = 12 apples.\nThen 12 - 2 = 11.\n10 / 3 = 3.33\n40% + 20% = 60%\n#### 11")
    assert [(s.expression, s.claimed, s.ok) for s in c["steps"]] == [
        ("3 * 4", "12", True), ("12 - 2", "11", False), ("10 / 3", "3.33", True), ("40% + 20%", "60%", True)]
    assert c["n_wrong"] == 1 and not c["all_hold"] and c["answer"] == "11" and c["well_formed"]
    chained = traces.check_trace("2 * 20% = 2 * 20 * .01 = .4\n#### .4")
    assert [(s.expression, s.claimed) for s in chained["steps"]] == [("2 * 20 * .01", ".4")]
    assert not traces.check_trace("It is 7")["well_formed"]


def test_reference_conversion_keeps_every_computation(gsm8k_dir):
    """Every calculator annotation with an operator reappears as a checked equation with its value."""
    converted = wrong = glued = algebra = 0
    for p in data.load_gsm8k("train", gsm8k_dir) + data.load_gsm8k("val", gsm8k_dir):
        trace = traces.reference_to_trace(p.solution)
        assert "<<" not in trace and trace.endswith(f"#### {p.answer}")
        steps = traces.check_trace(trace)["steps"]
        found = collections.Counter((s.expression.replace(" ", ""), data.normalize_number(s.claimed)) for s in steps)
        found += collections.Counter((s.expression.replace(" ", ""), data.normalize_number(str(Fraction(data.normalize_number(s.claimed)) * 100))) for s in steps if s.claimed.endswith("%"))
        unreadable = any(s.value == traces.UNREADABLE for s in steps)
        for expr, result in traces.ANNOTATION.findall(p.solution):
            expr = traces.format_expression(expr.replace("//", "/")).replace(" ", "")
            if any(op in expr.lstrip("-") for op in "+-*/"):
                if found[(expr, data.normalize_number(result))] == 0:
                    # only where the writer glued the arithmetic to a variable ("S + 30 + 46 = 76")
                    assert unreadable, (p.id, expr, result, trace)
                    glued += 1
                converted += 1
        wrong += sum(not s.ok and s.value != traces.UNREADABLE for s in steps)
        algebra += sum(s.value == traces.UNREADABLE for s in steps)
    assert converted > 23000
    assert glued < 60  # 40 at the time of writing
    assert wrong < 200  # GSM8K's own slips are rare (80 at the time of writing)
    assert algebra < 400  # "2x + 4 = 120": never true, in 65 solutions (264 at the time of writing)


def test_reference_to_trace_example():
    sol = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nShe earned 0.2 x 50 = $<<0.2*50=10>>10.\nAnd <<3+4=7>>7 more.\n#### 72"
    assert traces.reference_to_trace(sol) == "Natalia sold 48 / 2 = 24 clips in May.\nShe earned 0.2 * 50 = 10.\nAnd 3 + 4 = 7 more.\n#### 72"


def test_equations_only_keeps_every_equation_and_the_answer(gsm8k_dir):
    assert traces.equations_only("She has 3 + 4 = 7 pens.\nSo 7 * 2 = 14 in all.\n#### 14") == "3 + 4 = 7\n7 * 2 = 14\n#### 14"
    assert traces.equations_only("No arithmetic here.\n#### 5") == "#### 5"
    for p in data.load_gsm8k("train", gsm8k_dir)[:500]:
        trace = traces.reference_to_trace(p.solution)
        eq = traces.equations_only(trace)
        kept = [(s.expression, s.claimed, s.ok) for s in traces.find_equations(eq)]
        assert kept == [(s.expression, s.claimed, s.ok) for s in traces.find_equations(trace)]
        assert eq.split("\n")[-1] == trace.split("\n")[-1] and len(eq.split("\n")) == len(kept) + 1


# ----------------------------------------------------------------------------- calculator

def test_calculator_forces_the_result(tokenizer):
    calc = traces.Calculator(tokenizer)
    prefix = tokenizer.encode("She buys 3 packs.\nShe pays 12 * 3 + 1.5 =")
    assert prefix[-1] in calc.trigger_ids
    forced = calc(prefix)
    assert tokenizer.decode(prefix + forced) == "She buys 3 packs.\nShe pays 12 * 3 + 1.5 = 37.5"
    assert calc.fired == 1
    # the calculator reads the arithmetic before '=' by the checker's own rule
    day = tokenizer.encode("On day 2, 3 + 4 =")
    assert tokenizer.decode(day + calc(day)) == "On day 2, 3 + 4 = 7" and calc.fired == 2
    calc.fired = 1
    for text in ("So x =", "__import__('os').system('true') =", "Total =", "9" * 1001 + " * 9 ="):
        assert calc(tokenizer.encode(text)) == []
    assert calc.fired == 1


# -----------------------------------------------------------------------------
# The checker under hostile input: linear per line, and nothing unreadable is ever true


def test_checker_is_linear_on_long_lines():
    """Lines of 8 KB (the old checker took minutes: its left-hand-side regex was cubic) are checked at once."""
    import signal
    signal.signal(signal.SIGALRM, lambda *_: pytest.fail("check_trace took over 5 s on an 8 KB line"))
    signal.alarm(5)
    try:
        assert traces.check_trace("1 " * 2000 + "= 1 " * 1000)["n_steps"] == 0
        assert traces.check_trace("1 + " * 2000 + "1 = 2001")["n_unreadable"] == 1  # too long to read
        c = traces.check_trace("3 * 4 = 12 " * 800)
        assert c["n_steps"] == 800 and c["all_hold"]
    finally:
        signal.alarm(0)


@pytest.mark.parametrize("line", [
    " + ".join(["12"] * 50) + " = 480",  # 247 characters: the old checker read a suffix (true value 600)
    " + ".join(["12"] * 50) + " = 600",  # the right value, but not readable whole: never 'true'
    "2^3 + 1 = 4",                         # the old checker read '3 + 1'
    "1e3 * 2 = 6",                         # ... '3 * 2'
    "1e3 * 2 = 2000",                      # true in Python, not in our arithmetic
    "x + 3 = 5",                           # a variable
    "X * 11/4 = 330",                      # algebra in a GSM8K solution
])
def test_unreadable_expressions_never_hold(line):
    c = traces.check_trace(line + "\n#### 5")
    assert c["n_steps"] == 1 and c["n_unreadable"] == 1 and not c["all_hold"]
    assert teacher_judge(line + "\n#### 5") == "false_equation"


def teacher_judge(trace):
    return replies.validate_trace(trace, "stop", "5")[1]


@pytest.mark.parametrize("line, expression, value", [
    ("On day 2, 3 + 4 = 7", "3 + 4", "7"),                    # prose numbers before the expression
    ("we divide by 3. $1200 / 3 = 400", "$1200 / 3", "400"),
    ("(3 + 4 = 7)", "3 + 4", "7"),                            # the prose's own brackets
    ("Madeline spends25 * 4 = 100", "25 * 4", "100"),         # a GSM8K typo: a missing space, not a glued symbol
    ("2(50 + 100 + 120) = 540", "2(50 + 100 + 120)", "540"),  # implicit products, as teachers write them
    ("(1/4)24 = 6", "(1/4)24", "6"),
])
def test_readable_expressions(line, expression, value):
    (s,) = traces.find_equations(line)
    assert (s.expression, s.value, s.ok) == (expression, value, True)


def test_reference_units_between_numbers():
    """GSM8K writers put units inside their own equation; the annotation replaces it whole."""
    sol = "Then find the ears: 30 dogs * 1/5 = <<30*1/5=6>>6 dogs\nSo ($600 * 2)/day * 2 days = $<<(600*2)*2=2400>>2400\n#### 6"
    assert traces.reference_to_trace(sol) == "Then find the ears: 30 * 1 / 5 = 6 dogs\nSo (600 * 2) * 2 = 2400\n#### 6"


def test_calculator_does_not_compute_what_it_cannot_read(tokenizer):
    calc = traces.Calculator(tokenizer)
    for text in ("1e308 * 10 =", "2^3 + 1 =", "x + 3 ="):
        assert calc(tokenizer.encode(text)) == []
    assert calc.fired == 0


# ----------------------------------------------------------------------------- grading a student's output

def test_arithmetic_error_rate():
    outs = ["3 * 4 = 12 apples\n12 - 2 = 11\n#### 11", "2 + 2 = 4\n#### 4", "#### 7"]
    assert traces.arithmetic_error_rate(outs) == {"equations": 3, "wrong_equations": 1, "equation_error_rate": 1 / 3,
                                                  "problems": 3, "problems_with_wrong": 1, "problem_error_rate": 1 / 3}
    none = traces.arithmetic_error_rate(["#### 7"])
    assert none["equations"] == 0 and none["equation_error_rate"] is None and none["problem_error_rate"] == 0
    assert traces.arithmetic_error_rate([])["problem_error_rate"] is None


def test_step_correctness():
    ref = "5 * 4 = 20 pens\n20 + 1 = 21\n#### 21"
    assert traces.step_correctness("5 * 4 = 20\n20 + 1 = 22\n#### 22", ref) == \
        {"matched": 1, "n_output": 2, "n_reference": 2, "precision": 0.5, "recall": 0.5}
    # multisets: 4 written twice matches the reference's single 4 once; the written value
    # counts, normalized ("$1,200.00" is 1200), not what the left side equals
    r = traces.step_correctness("2 + 2 = 4\n1 + 3 = 4\n600 * 2 = $1,200.00\n#### 1200", "2 + 2 = 4\n4 * 300 = 1200\n4 * 2 = 8\n#### 8")
    assert (r["matched"], r["n_output"], r["n_reference"]) == (2, 3, 3)
    assert r["precision"] == pytest.approx(2 / 3) and r["recall"] == pytest.approx(2 / 3)
    assert traces.step_correctness("3 * 3 = 10\n#### 10", "3 * 3 = 9\n#### 9")["precision"] == 0.0
    assert traces.step_correctness("#### 4", ref) == {"matched": 0, "n_output": 0, "n_reference": 2, "precision": None, "recall": 0.0}
