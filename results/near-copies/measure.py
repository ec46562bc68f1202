"""
How well near_copies.py catches the same GSM8K test story told in other words, against the old
13-gram rule (the one extra_problems.py applied before near_copies.py), and how many GSM8K train questions it flags against test.

Every one of the 1,319 test questions is transformed four ways, deterministically (--seed):
    names      every person name (a capitalised word written mid-sentence somewhere in GSM8K and
               never lower-case; days and months excepted) replaced by another name, consistently
    reorder    the sentences before the last one shuffled into another order; the last sentence
               (the question asked) stays last. A question of fewer than three sentences is unchanged.
    synonyms   every word found in SYNONYMS (a hand-written table of common GSM8K words) replaced
    numbers    every number written in digits replaced by another (same decimals, never the same)
Two combinations are reported too, never tuned on: names+reorder+synonyms, and all four at once.
Each transformed question is checked against an index of the original test questions. The check is
on the question alone (no trace); the "+prog" column adds the program match, assuming the new
problem's trace is the original reference solution (names, reorder, synonyms: the same numbers,
so the same program; numbers changed: not measured, the program's numbers would differ).

Thresholds: among those flagging at most --budget (0.5%) of the 7,473 train questions against test
(with their reference solutions as traces), the lowest (summed) that catch at least 99.5% of the
tuning half (a seeded half of the test questions) under each single transformation; the other half
is reported as held out. The flagged train/test pairs go to --pairs for a look by hand.
Takes about 15 s on one busy CPU core.
Example:
    nice -n 19 python results/near-copies/measure.py --data-dir ../shared/data/gsm8k --pairs results/near-copies/train-flagged.txt
"""
import argparse
import itertools
import json
import random
import re
import time
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository's modules, run from anywhere
import near_copies  # noqa: E402
from data import NUMBER, read_jsonl, resolve_data_dir  # noqa: E402


class OldRule:
    """The decontamination rule before near_copies.py: a shared 13-gram of words (numbers and punctuation removed)."""

    def __init__(self):
        self.grams = {}

    def add(self, question, label):
        for gram in near_copies.ngrams(question):
            self.grams.setdefault(gram, label)

    def find(self, question):
        return next((self.grams[g] for g in near_copies.ngrams(question) if g in self.grams), None)

MONTHS_AND_DAYS = set("January February March April May June July August September October November December "
                      "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split())
NEW_NAMES = ("Aisha Bruno Chidi Dana Elif Farid Greta Hiro Ines Jonas Kavya Lars Mateo Nadia Oskar Priya Quentin "
             "Rosa Soren Tomas Uma Viktor Wanjiru Ximena Yusuf Zofia Amara Bodhi Cyrus Delia").split()

# common words of GSM8K questions and a synonym for each (replaced wherever they stand)
SYNONYMS = dict(pair.split(":") for pair in """
buy:purchase buys:purchases bought:purchased buying:purchasing sell:vend sells:vends sold:vended
selling:vending cost:price costs:totals price:cost spend:expend spends:expends spent:expended
pay:remit pays:remits paid:remitted earn:make earns:makes earned:made make:produce makes:produces
made:produced money:cash dollars:bucks store:shop shop:store day:daytime days:daytimes week:sennight
weeks:sennights month:moon months:moons year:annum years:annums hour:hr hours:hrs minute:min
minutes:mins total:overall each:every every:each many:numerous much:considerable more:additional
less:fewer fewer:less times:occasions number:count amount:quantity people:persons friends:pals
friend:pal children:kids kids:children child:kid boys:lads girls:lasses students:pupils
student:pupil teacher:instructor teachers:instructors class:course school:academy house:home
home:house car:automobile cars:automobiles truck:lorry bus:coach train:locomotive water:liquid
food:meals cookies:biscuits cookie:biscuit candy:sweets candies:sweets apples:pomes apple:pome
books:volumes book:volume bag:sack bags:sacks box:carton boxes:cartons pieces:portions piece:portion
slices:wedges cups:mugs bottles:flasks jar:pot pack:packet packs:packets large:big big:large
small:little little:small new:fresh old:aged long:lengthy tall:high fast:quick red:crimson
blue:azure green:emerald white:ivory yellow:golden half:one-half twice:doubly first:initial
second:next third:tertiary last:final remaining:leftover left:remaining rest:remainder need:require
needs:requires needed:required wants:desires want:desire decides:chooses decided:chose takes:requires
take:need gets:obtains get:obtain got:obtained gives:hands give:hand gave:handed uses:employs
use:employ used:employed eat:consume eats:consumes ate:consumed drink:sip run:jog runs:jogs
walk:stroll walks:strolls read:peruse works:labors work:labor job:occupation company:firm
trip:journey travel:journey drive:motor drives:motors miles:mi feet:ft inches:in pounds:lbs
ounces:oz gallons:gal weight:mass weighs:masses speed:velocity rate:pace average:mean profit:gain
salary:wage pizza:pie party:celebration birthday:anniversary game:match games:matches team:squad
points:marks score:tally garden:yard plants:shrubs trees:saplings flowers:blooms dog:hound
dogs:hounds fish:trout birds:fowl chickens:hens farm:ranch farmer:rancher market:bazaar
restaurant:diner shirts:tops shoes:sneakers toys:playthings marbles:beads stickers:decals
balloons:balls pens:markers pencils:crayons cards:tickets eggs:ova milk:dairy bread:loaf
cake:gateau pages:sheets movie:film movies:films hats:caps city:town together:combined
combined:together altogether:in-all remaining:rest sister:sibling brother:sibling mother:mom
mom:mother father:dad dad:father wife:spouse husband:spouse family:household
""".split())


def load_questions(path):
    """The questions and reference solutions of a GSM8K JSONL file. Example: load_questions(d / "test.jsonl")[0][0]"""
    return [(row["question"], row["answer"]) for row in read_jsonl(path)]


def person_names(questions):
    """
    Capitalised words written mid-sentence in some question and never in lower case in any,
    days and months left out: the names to change. Example: "Janet" in person_names(all_questions)
    """
    lower = {w for q in questions for w in re.findall(r"\b[a-z]+\b", q)}
    mid = {m.group(1) for q in questions for m in re.finditer(r"(?<![.!?]\s)(?<!^)\b([A-Z][a-z]+)\b", q)}
    return {w for w in mid if w.lower() not in lower and w not in MONTHS_AND_DAYS}


def rename(question, names, rng):
    """
    The question with every name of `names` replaced by a new one (the same name by the same one).
    Example: rename("Tom and Ann", {"Tom", "Ann"}, random.Random(0)) == "Bodhi and Mateo"
    """
    found = [w for w in dict.fromkeys(re.findall(r"\b[A-Z][a-z]+\b", question)) if w in names]
    new = dict(zip(found, rng.sample([n for n in NEW_NAMES if n not in found], len(found))))
    return re.sub(r"\b[A-Z][a-z]+\b", lambda m: new.get(m.group(), m.group()), question)


def reorder(question, rng):
    """
    The question with its sentences before the last one in another (random) order; unchanged when
    there are fewer than two of them. Example: reorder("A b. C d. E f?", random.Random(0)) == "C d. A b. E f?"
    """
    sentences = near_copies.SENTENCE_END.split(question.strip())
    body, last = sentences[:-1], sentences[-1:]
    if len(body) < 2:
        return question
    order = list(range(len(body)))
    while order == sorted(order):
        rng.shuffle(order)
    return " ".join([body[i] for i in order] + last)


def synonym_of(match):
    """
    The synonym of a matched word (its capital kept), or the word when SYNONYMS has none.
    Example: synonym_of(re.match(r"\\w+", "Buys")) == "Purchases"
    """
    w = match.group()
    new = SYNONYMS.get(w.lower())
    return w if new is None else (new[0].upper() + new[1:] if w[0].isupper() else new)


def with_synonyms(question):
    """
    The question with every word of the SYNONYMS table replaced (a capital kept).
    Example: with_synonyms("Tom buys 3 apples.") == "Tom purchases 3 pomes."
    """
    return re.sub(r"[A-Za-z]+", synonym_of, question)


def new_number(text, rng):
    """
    Another number written like text (its decimals kept, commas dropped), never the same value.
    Example: new_number("12", random.Random(0)) != "12"
    """
    digits = len(text.split(".")[1]) if "." in text else 0
    value = float(text.replace(",", "") or 0)
    while True:
        new = rng.uniform(max(0.0, value / 2), value * 2 + 5)
        out = f"{new:.{digits}f}" if digits else str(int(new))
        if float(out) != value and float(out) > 0:
            return out


def new_numbers(question, rng):
    """The question with every number written in digits replaced by another. Example: new_numbers("3 cats", rng) != "3 cats" """
    return NUMBER.sub(lambda m: new_number(m.group(), rng), question)


TRANSFORMS = ("names", "reorder", "synonyms", "numbers")
COMBINED = ("names+reorder+synonyms", "all four")  # reported, not tuned on
FLOOR = 0.1  # the lowest similarity a words or skeleton threshold may take
TUNED = ("words", "skeleton", "program")  # the signals with a threshold to choose (a shared 13-gram always flags)


def transform_all(questions, names, seed):
    """
    {transformation: the transformed questions, in order}, each drawn with its own seeded rng.
    Example: transform_all(test_questions, person_names(all_questions), 0)["names"][0]
    """
    rng = lambda kind, i: random.Random(f"{seed}-{kind}-{i}")
    out = {"names": [rename(q, names, rng("names", i)) for i, q in enumerate(questions)],
           "reorder": [reorder(q, rng("reorder", i)) for i, q in enumerate(questions)],
           "synonyms": [with_synonyms(q) for q in questions],
           "numbers": [new_numbers(q, rng("numbers", i)) for i, q in enumerate(questions)]}
    out["names+reorder+synonyms"] = [with_synonyms(reorder(q, rng("reorder", i))) for i, q in enumerate(out["names"])]
    out["all four"] = [new_numbers(q, rng("numbers", i)) for i, q in enumerate(out["names+reorder+synonyms"])]
    return out


def flagged(scores, thresholds):
    """
    Whether a question's scores (NearCopyIndex.scores) pass one of the thresholds ({signal: t}).
    Example: flagged({"words": (0.9, 3)}, {"words": 0.5, "skeleton": 0.4, "program": 0.1, "13-gram": 1.0}) is True
    """
    return any(score >= thresholds[kind] for kind, (score, _) in scores.items())


def share(flags):
    """The share of True in a list, in percent. Example: share([True, False]) == 50.0"""
    return 100.0 * sum(flags) / max(1, len(flags))


def choose_thresholds(tune, train, budget, target=99.5):
    """
    The thresholds {signal: t}: among those flagging at most `budget` percent of train, the ones
    that catch the most (up to `target` percent) of the tuning half under its worst transformation,
    then are lowest (summed: the most tolerant of further rewording), then flag the fewest train
    questions. tune: {transformation: [scores]}; train: [scores].
    Example: choose_thresholds({"names": [{"words": (1.0, 0)}]}, [{}], 2.0)["words"] == 0.1
    """
    best_of = lambda s: tuple(s.get(k, (-1.0, 0))[0] for k in TUNED)
    tune, train = {k: [best_of(s) for s in v] for k, v in tune.items()}, [best_of(s) for s in train]
    catch = lambda rows, t: 100.0 * sum(w >= t[0] or s >= t[1] or p >= t[2] for w, s, p in rows) / max(1, len(rows))
    grid = [round(FLOOR + 0.05 * k, 2) for k in range(17)]
    best = None
    for t in itertools.product(grid, grid, [round(0.02 * k, 2) for k in range(16)]):
        false = catch(train, t)
        if false <= budget:
            key = (min(min(catch(rows, t) for rows in tune.values()), target), -round(sum(t), 2), -false, t)
            best = max(best or key, key)
    return {**dict(zip(TUNED, best[3])), "13-gram": 1.0}


def score_queries(index, queries, traces=None):
    """
    NearCopyIndex.scores of each query (with its trace when traces are given), down to FLOOR.
    Example: score_queries(index, ["Tom has 3 cats."])  # [{}]
    """
    return [index.scores(q, traces[i] if traces else None, FLOOR) for i, q in enumerate(queries)]


def report_row(name, old, old_changed, new_tune, new_held, new_prog, own, changed):
    """One line of the table (percentages). Example: report_row("names", 90.0, 87.0, 100.0, 100.0, 100.0, 100.0, 954)"""
    prog = "   -  " if new_prog is None else f"{new_prog:6.1f}"
    return f"{name:22} {changed:7d} {old:8.1f} {old_changed:8.1f} {new_tune:10.1f} {new_held:10.1f} {prog} {own:9.1f}"


def write_pairs(path, train, test, train_scores, thresholds):
    """
    The train questions flagged against test, most similar first, each with its test question,
    signal and similarity, to a text file for a look by hand; returns how many.
    Example: write_pairs(Path("flagged.txt"), train, test, scores, thresholds)
    """
    rows = []
    for k, s in enumerate(train_scores):
        hits = [(score, kind, i) for kind, (score, i) in s.items() if score >= thresholds[kind]]
        if hits:
            score, kind, i = max(hits)
            rows.append((score, kind, k, i))
    lines = [f"{len(rows)} GSM8K train questions flagged against test (thresholds {thresholds})\n"]
    for score, kind, k, i in sorted(rows, reverse=True):
        lines += [f"== train line {k + 1} / test line {i + 1}: {kind}, similarity {score:.3f}",
                  f"TRAIN: {train[k][0]}", f"TEST:  {test[i][0]}", f"TRAIN answer {train[k][1].split('####')[-1].strip()}, "
                  f"TEST answer {test[i][1].split('####')[-1].strip()}", ""]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(rows)


def get_parser():
    """The command line. Example: get_parser().parse_args(["--seed", "1"]).seed == 1"""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--data-dir", default=None, help="GSM8K folder (default: $GSM8K_DIR or ./data/gsm8k)")
    ap.add_argument("--seed", type=int, default=1234, help="draws the transformations and the tuning half")
    ap.add_argument("--budget", type=float, default=0.5, help="most train questions flagged, in percent, while tuning")
    ap.add_argument("--pairs", default=str(Path(__file__).with_name("train-flagged.txt")), help="the flagged train/test pairs")
    ap.add_argument("--json", default=str(Path(__file__).with_name("figures.json")), help="the figures")
    return ap


def score_all(test, train, variants):
    """
    The index of the test questions, the old 13-gram index, and the scores: {transformation:
    [scores]} (with "+program" when the original solution is given as the trace) and train's.
    Example: index, old, scores, train_scores = score_all(test, train, variants)
    """
    index, old = near_copies.NearCopyIndex(), OldRule()
    for i, (q, solution) in enumerate(test):
        index.add(q, i, solution)
        old.add(q, i)
    solutions = [s for _, s in test]
    scores = {k: score_queries(index, variants[k]) for k in TRANSFORMS + COMBINED}
    scores.update({f"{k}+program": score_queries(index, variants[k], solutions) for k in TRANSFORMS[:3] + COMBINED[:1]})
    return index, old, scores, score_queries(index, [q for q, _ in train], [s for _, s in train])


def print_table(old, scores, variants, test_q, t, halves):
    """
    The table of flagged shares per transformation (old rule on all and on the questions the
    transformation changed, new check on the tuning and held-out halves, with the program, against
    its own original) as printed; returns it as a dict.
    Example: print_table(old, scores, variants, test_q, {"words": 0.4, ...}, (tune_ids, held_ids))
    """
    pick = lambda v, ids: [flagged(v[i], t) for i in ids]
    print("\nshare of test questions flagged against the original test questions, in percent")
    print(f"{'change':22} {'changed':>7} {'13-gram':>8} {'13g chg':>8} {'new tune':>10} {'new held':>10} {'+prog':>6} {'own orig':>9}")
    table = {}
    for k in TRANSFORMS + COMBINED:
        old_flags = [old.find(q) is not None for q in variants[k]]
        own = [any(i == j and s >= t[kind] for kind, (s, j) in scores[k][i].items()) for i in range(len(test_q))]
        prog = share(pick(scores[f"{k}+program"], halves[1])) if f"{k}+program" in scores else None
        changed = [a != b for a, b in zip(variants[k], test_q)]
        row = (share(old_flags), share([f for f, c in zip(old_flags, changed) if c]), share(pick(scores[k], halves[0])),
               share(pick(scores[k], halves[1])), prog, share(own), sum(changed))
        table[k] = dict(zip(("old_13gram_all", "old_13gram_changed_only", "new_tune", "new_held_out", "new_with_program_held_out",
                             "new_own_original_all", "questions_changed"), (x if x is None else round(x, 2) for x in row)))
        print(report_row(k, *row))
    return table


def main(argv=None):
    """Build the transformations, score old and new checks, choose thresholds, print the figures. Example: main([])"""
    args = get_parser().parse_args(argv)
    started = time.time()
    d = resolve_data_dir(args.data_dir)
    test, train = load_questions(d / "test.jsonl"), load_questions(d / "train.jsonl")
    test_q = [q for q, _ in test]
    variants = transform_all(test_q, person_names(test_q + [q for q, _ in train]), args.seed)
    order = list(range(len(test)))
    random.Random(args.seed).shuffle(order)
    halves = (sorted(order[:len(order) // 2]), sorted(order[len(order) // 2:]))  # tuning, held out
    _, old, scores, train_scores = score_all(test, train, variants)
    print(f"scored in {time.time() - started:.1f} s")

    t = choose_thresholds({k: [scores[k][i] for i in halves[0]] for k in TRANSFORMS}, train_scores, args.budget)
    print(f"thresholds (chosen on the tuning half, {len(halves[0])} questions, and train, at most {args.budget}% flagged): {t}")
    print(f"module defaults: words {near_copies.WORDS_THRESHOLD}, skeleton {near_copies.SKELETON_THRESHOLD}, "
          f"program {near_copies.PROGRAM_THRESHOLD}")
    figures = {"thresholds": t, "seed": args.seed, "transforms": print_table(old, scores, variants, test_q, t, halves)}
    train_new = [flagged(s, t) for s in train_scores]
    train_q = [flagged({k: v for k, v in s.items() if k != "program"}, t) for s in train_scores]
    train_old = [old.find(q) is not None for q, _ in train]
    write_pairs(args.pairs, train, test, train_scores, t)
    figures["train"] = {"questions": len(train), "new_with_program": round(share(train_new), 2), "flagged": sum(train_new),
                        "new_question_only": round(share(train_q), 2), "old_13gram": round(share(train_old), 2)}
    print(f"\nGSM8K train questions flagged against test: new {share(train_new):.2f}% ({sum(train_new)} of {len(train)}; "
          f"question only {share(train_q):.2f}%), 13-gram {share(train_old):.2f}% ({sum(train_old)}); pairs in {args.pairs}")
    figures["seconds"] = round(time.time() - started, 1)
    Path(args.json).write_text(json.dumps(figures, indent=1) + "\n", encoding="utf-8")
    print(f"{figures['seconds']} s")


if __name__ == "__main__":
    main()
