"""traces.py: the trace format, safe arithmetic, the checker and the calculator against exact oracles; re-instantiation on
real GSM8K, every rule on the case that motivated it, and a property test over 200 problems."""
import collections
import json
import random
import re
from fractions import Fraction
from pathlib import Path

import pytest

import data
import traces

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def train_by_id(gsm8k_dir):
    return {p.id: p for p in data.load_gsm8k("train", gsm8k_dir)}


def program(p, steps=False):
    trace = traces.reference_to_trace(p.solution)
    return traces.Program(p.question, trace if steps else traces.equations_only(trace))


def shape(text):
    """text with every number replaced by N: what must not change."""
    return traces.WRITTEN_NUMBER.sub("N", text)


@pytest.mark.parametrize("pid, reason", [
    ("train-00006", "a question number equals a result"),   # the same value could be read from two places
    ("train-00023", "two steps give the same value"),
    ("train-00004", "a result equals a constant"),
    ("train-00010", "that no word of the question explains"),  # a hidden step in prose
    ("train-00035", "a result written as a percentage"),
    ("train-00086", "the answer is not a computed value"),
])
def test_ambiguous_bindings_give_no_variant(train_by_id, pid, reason):
    p = program(train_by_id[pid])
    assert p.reason is not None and reason in p.reason
    assert traces.reinstantiate(train_by_id[pid].question, traces.reference_to_trace(train_by_id[pid].solution), random.Random(0)) is None


def test_a_number_also_written_as_a_word_gives_no_variant(train_by_id):
    """train-02657: 'Two dozens are 2 * 12 = 24' would become 'Two dozens are 4 * 12' (a hand check found it)."""
    assert "written as a word" in program(train_by_id["train-02657"], steps=True).reason


def test_a_relation_the_question_states_gives_no_variant(train_by_id):
    """train-04327: '$14 ticket, $6 of food, their entire $20 budget': 14 + 6 = 20 holds in words, in no step."""
    assert "relation" in program(train_by_id["train-04327"]).reason
    assert traces.hidden_relation(traces.numbers_in("14 and 6 make 20"), traces.numbers_in("14 and 6 make 20")[:1])
    assert not traces.hidden_relation(traces.numbers_in("14 and 6 make 21"), traces.numbers_in("14 and 6 make 21"))


def test_scores_stay_on_their_scale(train_by_id):
    """train-04609: quiz scores of 92, 94, 95 became 145 with an average of 155 (a hand check found it)."""
    p = train_by_id["train-04609"]
    trace = traces.equations_only(traces.reference_to_trace(p.solution))
    old = story_numbers(p.question, trace)
    got = traces.variants(p.question, trace, 30, random.Random(0))[1:]
    assert got
    for q, t in got:
        assert all(n <= 100 for n, was in zip(story_numbers(q, t), old) if was <= 100), (q, t)


@pytest.mark.parametrize("pid, text, why", [
    ("train-00131", "11", "ordinal"),          # "the 11th chapter"
    ("train-00016", "5", "time"),              # "in the ratio 2:5": read as a clock time, kept
    ("train-00068", "3", "fraction"),          # "3/4 of what she has"
    ("train-00042", "12", "written twice"),
    ("train-00078", "1", "0 or 1"),
    ("train-00258", "80", "glued to a word"),  # "80cm"
    ("train-00108", "14", "unused"),           # no step reads it
    ("train-00610", "2000", "year"),           # a year-like number is never touched, even as a count of pies
])
def test_frozen_numbers_keep_their_value(train_by_id, pid, text, why):
    p = train_by_id[pid]
    prog = program(p)
    frozen = [n for n in prog.frozen if n.text == text]
    assert frozen, (pid, [n.text for n in prog.frozen])
    constants = traces.explained_constants(p.question)
    values = [n.value for n in traces.numbers_in(p.question)]
    repeated = {v for v in values if values.count(v) > 1}
    assert (traces.freeze_reason(p.question, frozen[0], constants, repeated) or "unused") == why
    index = [n.start for n in traces.numbers_in(p.question)].index(frozen[0].start)
    got = traces.variants(p.question, traces.equations_only(traces.reference_to_trace(p.solution)), 8, random.Random(1))[1:]
    for question, _ in got:  # only numbers change, so the i-th number of the variant stands where the original's did
        assert traces.numbers_in(question)[index].text == text


def test_unit_constant_is_frozen_with_its_unit():
    q = "A week has 7 days. Tom works 7 hours a day and 3 days more. How many hours?"
    n = traces.numbers_in(q)[0]
    assert traces.freeze_reason(q, n, traces.explained_constants(q), set()) == "unit constant"


def test_story_caps_on_real_cases(train_by_id, gsm8k_dir):
    """Calendar counts, ages and heights stay possible in every variant; results move at most 3x."""
    rng = random.Random(5)
    week = next(p for p in train_by_id.values() if re.search(r"\b\d+ days a week\b", p.question) and not program(p).reason)
    for q, _ in traces.variants(week.question, traces.equations_only(traces.reference_to_trace(week.solution)), 20, rng)[1:]:
        assert all(int(d) <= 7 for d in re.findall(r"\b(\d+) days a week", q)), q
    # train-02887: a hand check found a grandmother of 137; every age, given or computed, stays at most 100
    ages = train_by_id["train-02887"]
    for q, t in traces.variants(ages.question, traces.equations_only(traces.reference_to_trace(ages.solution)), 20, rng)[1:]:
        assert max(n.value for n in traces.numbers_in(q + "\n" + t)) <= 100, (q, t)
    # train-05582: the 101st floor may not grow 86x (a 1990-foot floor on a 3130-foot tower)
    tower = train_by_id["train-05582"]
    old = Fraction(tower.answer)
    got = traces.variants(tower.question, traces.equations_only(traces.reference_to_trace(tower.solution)), 20, rng)[1:]
    assert got and all(old / 3 <= Fraction(data.extract_answer(t)) <= old * 3 for _, t in got)


def story_numbers(question, trace):
    """The question's numbers and the results of the trace's steps, in order."""
    return [n.value for n in traces.numbers_in(question)] + [Fraction(s.claimed.replace(",", "")) for s in traces.find_equations(trace)]


def ranks_kept(question, trace, new_question, new_trace):
    """The question's numbers and the step results keep their ranking (constants like 'four times' are not ranked)."""
    old, new = story_numbers(question, trace), story_numbers(new_question, new_trace)
    return all((old[i] < old[j]) == (new[i] < new[j]) for i in range(len(old)) for j in range(len(old)))


def test_every_number_keeps_its_rank(train_by_id, monkeypatch):
    """train-04044: overtime ($15) must stay above the regular rate ($10); a hand check found $16 against $30."""
    p = train_by_id["train-04044"]
    trace = traces.equations_only(traces.reference_to_trace(p.solution))
    monkeypatch.setattr(traces, "KEEP_ALL_ORDERS", False)
    loose = traces.variants(p.question, trace, 30, random.Random(2))[1:]
    assert any(not ranks_kept(p.question, trace, q, t) for q, t in loose)  # what the rule is for
    monkeypatch.setattr(traces, "KEEP_ALL_ORDERS", True)
    strict = traces.variants(p.question, trace, 30, random.Random(2))[1:]
    assert all(ranks_kept(p.question, trace, q, t) for q, t in strict)


def test_example_by_hand():
    q = "Tom has 5 apples and buys 3 more bags of 4 apples. How many apples does he have?"
    t = "3 * 4 = 12\n5 + 12 = 17\n#### 17"
    assert traces.reinstantiate(q, t, random.Random(0)) is None  # one draw may break a rule (here: the ranking)
    new_q, new_t = traces.variants(q, t, 20, random.Random(3))[1]
    a, b, c = (int(n.text) for n in traces.numbers_in(new_q))
    assert shape(new_q) == shape(q) and (a, b, c) != (5, 3, 4)
    assert new_t == f"{b} * {c} = {b * c}\n{a} + {b * c} = {a + b * c}\n#### {a + b * c}"


def test_write_number_keeps_the_style():
    assert traces.write_number(Fraction(5, 2), "1.50") == "2.50"
    assert traces.write_number(Fraction(2500), "1,200") == "2,500"
    assert traces.write_number(Fraction(7), "3") == "7"
    assert traces.write_number(Fraction(1, 3), "3") is None  # no exact decimal: never rounded


def test_property_every_variant_checks_and_keeps_its_wording(gsm8k_dir):
    """200 random train problems, up to 8 variants each: every one checks exactly and differs only in numbers."""
    problems = random.Random(7).sample(data.load_gsm8k("train", gsm8k_dir), 200)
    n_variants = with_any = 0
    for p in problems:
        for fmt in (traces.reference_to_trace(p.solution), traces.equations_only(traces.reference_to_trace(p.solution))):
            got = traces.variants(p.question, fmt, 8, random.Random(p.id))
            assert got[0] == (p.question, fmt)
            with_any += len(got) > 1
            for q, t in got[1:]:
                c = traces.check_trace(t)
                assert c["all_hold"] and c["well_formed"] and c["n_unreadable"] == 0, t
                assert c["n_steps"] == traces.check_trace(fmt)["n_steps"]
                assert shape(q) == shape(p.question) and shape(t) == shape(fmt) and q != p.question
                assert ranks_kept(p.question, fmt, q, t)
                n_variants += 1
    assert with_any > 100 and n_variants > 500  # 154 of 400 (problem, format) pairs and 850 variants at the time of writing


def test_seen_stories_file_is_train_only_and_never_trained_on(gsm8k_dir, tmp_path):
    """The committed evaluation set: variants of train stories (never val or test), disjoint from what training draws."""
    import train
    rows = data.read_jsonl(ROOT / "results" / "seen-stories" / "seen-stories.jsonl")
    train_ids = {p.id: p for p in data.load_gsm8k("train", gsm8k_dir)}
    assert len(rows) == 500 and all(r["story"] in train_ids for r in rows)
    for r in rows:
        c = traces.check_trace(r["answer"])
        assert c["all_hold"] and shape(r["question"]) == shape(train_ids[r["story"]].question) and r["question"] != train_ids[r["story"]].question
    stories = [train_ids[r["story"]] for r in rows[:20]]
    traces_by_id = {p.id: [traces.equations_only(traces.reference_to_trace(p.solution))] for p in stories}
    never = train.seen_story_questions(ROOT / "results" / "seen-stories" / "seen-stories.jsonl")
    problems, _ = train.with_variants(stories, traces_by_id, 16, 1337, never)
    assert len(problems) > 100 and not never & {p.question for p in problems}
    assert all(p.id.split("~")[0] in traces_by_id for p in problems)
    # the command writes such a file (the committed one is fixed: rules added since may drop a few of its rows)
    out = tmp_path / "seen.jsonl"
    traces.write_seen_stories(data.load_gsm8k("train", gsm8k_dir), 20, 2027, out)
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(written) == 20 and all(r["story"] in train_ids and traces.check_trace(r["answer"])["all_hold"] for r in written)

# -----------------------------------------------------------------------------
# The trace format, safe arithmetic, the checker and the calculator (moved from test_data.py with the code)

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
    assert traces.safe_eval(expr) == value


@pytest.mark.parametrize("expr", [
    "__import__('os')", "2 ** 3", "1 / 0", "3 +", "(1 + 2", "1 + 2)", "", "x * 2", "9" * 20 + " * 9",
    "(" * 30 + "1" + ")" * 30, "1+" * 150 + "1", "1e9",
])
def test_safe_eval_rejects(expr):
    with pytest.raises(ValueError):
        traces.safe_eval(expr)


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
    for text in ("So x =", "__import__('os').system('true') =", "Total =", "9" * 30 + " * 9 ="):
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
    return traces.validate_trace(trace, "stop", "5")[1]


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


# ----------------------------------------------------------------------------- a teacher's reply

@pytest.mark.parametrize("reply,trace", [
    ("**1.** 3 × 4 = 12\n\nThe answer is 12.", "3 * 4 = 12\n#### 12"),
    ("## Solution\n- 3 x 4 = 12 apples. #### 12 apples\nHope this helps!", "Solution\n3 * 4 = 12 apples.\n#### 12"),
    ("\\[ 48 \\div 2 = 24 \\]\nSo 48 + 24 = \\boxed{72}", "48 / 2 = 24\nSo 48 + 24 = 72\n#### 72"),
    ("Answer: $1,200.00", "#### 1200"),
    ("3 * 4 = 12, so the answer is 12", "3 * 4 = 12, so the answer is 12\n#### 12"),
    ("The answer is 5.\nNo wait, the answer is 6.", "The answer is 5.\nNo wait, the answer is 6."),  # ambiguous: left alone
    ("  12 −  5 = 7  \r\n\r\n####   $7", "12 - 5 = 7\n#### 7"),
    ("#### Step 1\nShe has 16-3 = <<16-3=13>>13 eggs.\n\\(\\boxed{13}\\)", "Step 1\nShe has 16 - 3 = 13 eggs.\n#### 13"),
    ("So 48 + 24 = $<<48+24=72>>72 in all.", "So 48 + 24 = 72 in all."),  # GSM8K's notes, without a '####'
    ("27 \\div \\frac{3}{4} = 36 and \\frac{\\frac{1}{2}}{4 - 2} = \\boxed{0.25}",       # a fraction stays whole
     "27 / (3 / 4) = 36 and ((1 / 2) / (4 - 2)) = 0.25\n#### 0.25"),
    ("It takes 8770 / 15 = <<8770/15=584.6666666666666>>584 boxes.",       # a sampled model's own number
     "It takes 8770 / 15 = 584.666667 584 boxes."),  # after the note: kept apart; a float's repr rounded
])
def test_normalize_reply(reply, trace):
    assert traces.normalize_reply(reply) == trace


def test_validate_trace_reasons():
    assert traces.validate_trace("3 x 4 = 13\nThe answer is 13", "stop", "13")[1] == "false_equation"  # 'x' is seen
    assert traces.validate_trace("3 * 4 = 12\n#### 12", "length", "12")[1] == "truncated"
    assert traces.validate_trace("3 * 4 = 12", "stop", "12")[1] == "unparsed"
    assert traces.validate_trace("It is twelve.\n#### 12", "stop", "12")[1] == "no_equation"
    assert traces.validate_trace("It is twelve.\n#### 12", "stop", "12", min_equations=0)[1] is None


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


# ----------------------------------------------------------------------------- training targets

def test_training_targets_one_per_mode():
    trace = "1 + 1 = 2\n2 * 3 = 6\n4 - 1 = 3\n#### 3"
    assert traces.training_targets("answer", "3", None, "s", 2) == [("answer", ["#### 3"])]
    assert traces.training_targets("cot", "3", None, "s", 2) == []  # no trace, nothing to learn from
    assert traces.training_targets("cot", "3", [trace], "s", 2) == [("cot", [trace])]
    assert traces.training_targets("filler", "3", [trace, trace], "s", 2) == [("cot", [".", ".", "#### 3"])] * 2
    assert traces.training_targets("mixed", "3", [trace], "s", 2) == [("cot", ["[cot]", trace]), ("answer", ["[answer]", "#### 3"])]
    assert traces.training_targets("mixed", "3", [], "s", 2) == [("answer", ["[answer]", "#### 3"])]
    (task, (shuffled,)), = traces.training_targets("shuffled", "3", [trace], "s", 2)
    assert task == "cot" and shuffled.endswith("\n#### 3") and sorted(shuffled.split("\n")) == sorted(trace.split("\n"))
    assert [traces.shuffled_target(trace, f"s-{k}") for k in range(20)] != [[trace]] * 20  # it does shuffle
    with pytest.raises(ValueError):
        traces.training_targets("nope", "3", [trace], "s", 2)
