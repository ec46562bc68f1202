"""
Re-instantiation: new numbers for a checked trace, which serves train.py --variants and the
"seen stories, new numbers" evaluation set. Built on traces.py (the checker) and arithmetic.py.

Re-instantiation: every checked trace is a program over its question's numbers.

Each equation's operands come from the question's numbers, from earlier results, or are constants
that a word of the question explains ("60" with "minutes", "2" with "twice"). Give the question
new numbers, run the program again with exact fractions, write the numbers back into the question
and the trace, and the one solved problem becomes many verified examples at no API cost.

    python reinstantiate.py yield                 # how many problems of GSM8K train give variants
    python reinstantiate.py seen-stories --out results/seen-stories.jsonl   # the "seen stories, new numbers" set

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
  (train-01229: 109 inches tall); a result changes by at most 3x (train-05582: the 101st
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
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import data
import files
from arithmetic import ArithmeticFault, arithmetic_tokens, evaluate_tokens
from cli_checks import arg_number
from data import format_number
from traces import check_trace, equations_only, reference_to_trace

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
        self.given_pairs = list(zip(given, given[1:]))
        self.all_pairs = list(zip(every, every[1:]))
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
            except ArithmeticFault:
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
# The seen-stories evaluation set and the command line


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


def print_yield(train, k, seed):
    """
    How many problems of GSM8K train give variants, how many in all, and why the others give none.
    Example: print_yield(data.load_gsm8k("train"), 64, 1337)
    """
    t0 = time.time()
    counts, reasons = [], {}
    for i, p in enumerate(train):
        rng = random.Random(f"{seed}-{p.id}")
        program = Program(p.question, reference_to_trace(p.solution))
        if program.reason:
            key = re.sub(r"[\d.]+", "N", program.reason)
            reasons[key] = reasons.get(key, 0) + 1
        counts.append(len(variants(p.question, reference_to_trace(p.solution), k, rng)) - 1)
        if (i + 1) % 1000 == 0:
            print(f"{i + 1}/{len(train)} problems, {time.time() - t0:.0f} s", file=sys.stderr)
    n = len(counts)
    print(f"{n} train problems, k={k}, {time.time() - t0:.0f} s")
    for at_least in (1, 10, 50):
        print(f"  with at least {at_least} new variants: {sum(c >= at_least for c in counts)} ({sum(c >= at_least for c in counts) / n:.1%})")
    print(f"  new variants in all: {sum(counts)}")
    for r, count in sorted(reasons.items(), key=lambda x: -x[1])[:12]:
        print(f"  rejected: {r}: {count}")


def print_examples(train, n, seed):
    """
    n random train problems, each with one variant or the reason it has none.
    Example: print_examples(data.load_gsm8k("train"), 3, 1337)
    """
    rng = random.Random(seed)
    for p in rng.sample(train, n):
        got = variants(p.question, reference_to_trace(p.solution), 2, random.Random(f"{seed}-{p.id}"))
        for label, (q, t) in zip(("original", "variant"), got if len(got) > 1 else []):
            print(f"== {p.id} ({label})\n{q}\n{t}\n")
        if len(got) == 1:
            print(f"== {p.id}: no variant ({Program(p.question, reference_to_trace(p.solution)).reason or 'no draw passed'})\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["yield", "seen-stories", "show"], help="yield: figures on GSM8K train; seen-stories: write the evaluation set; show: print variants of a few problems")
    parser.add_argument("--data-dir", default=None, help="GSM8K folder (default: $GSM8K_DIR, else data/gsm8k)")
    parser.add_argument("--k", type=arg_number(int, at_least=1), default=64, help="variants wanted per problem (yield, show)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: 1337; seen-stories: 2027, which no training run uses)")
    parser.add_argument("--n", type=arg_number(int, at_least=1), default=500, help="seen-stories: problems in the set; show: problems shown")
    parser.add_argument("--out", default="results/seen-stories/seen-stories.jsonl", help="seen-stories: where to write the set")
    parser.add_argument("--overwrite", action="store_true", help="seen-stories: replace an --out that exists")
    args = parser.parse_args(argv)
    try:
        if args.command == "seen-stories":
            files.check_output_file(args.out)
            if Path(args.out).exists() and not args.overwrite:
                raise ValueError(f"--out {args.out} exists (a set others may evaluate on); pass --overwrite to replace it")
    except ValueError as e:
        sys.exit(f"error: {e}")
    train = data.load_gsm8k("train", args.data_dir)
    if args.seed is None:
        args.seed = 2027 if args.command == "seen-stories" else 1337
    if args.command == "yield":
        print_yield(train, args.k, args.seed)
    elif args.command == "seen-stories":
        write_seen_stories(train, args.n, args.seed, args.out)
    elif args.command == "show":
        print_examples(train, args.n, args.seed)


if __name__ == "__main__":
    main()
