"""
near_copies.py against exact oracles on real GSM8K test questions: a test question told again with
other names, its sentences in another order, synonyms or new numbers is flagged, where the old
13-gram rule (TinyGSM's, extra_problems.py's before near_copies.py) misses it; an unrelated GSM8K question is not flagged.

Run: nice -n 19 python -m pytest -q tests/test_near_copies.py
"""
import sys
from fractions import Fraction
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import near_copies  # noqa: E402
from data import load_gsm8k, read_jsonl  # noqa: E402


class OldRule:
    """The rule extra_problems.py applied before near_copies.py: a shared 13-gram of words, numbers and punctuation removed."""

    def __init__(self, questions):
        self.grams = {g for q in questions for g in near_copies.ngrams(q)}

    def find(self, question):
        return "test" if any(g in self.grams for g in near_copies.ngrams(question)) else None

# GSM8K test questions (test.jsonl lines 7, 13 and 41), told again by hand
TOULOUSE = ("Toulouse has twice as many sheep as Charleston. Charleston has 4 times as many sheep as Seattle. "
            "How many sheep do Toulouse, Charleston, and Seattle have together if Seattle has 20 sheep?")
RENAMED = ("Lyon has twice as many sheep as Marseille. Marseille has 4 times as many sheep as Nice. "
           "How many sheep do Lyon, Marseille, and Nice have together if Nice has 20 sheep?")
RENAMED_NEW_NUMBERS = ("Lyon has twice as many sheep as Marseille. Marseille has 5 times as many sheep as Nice. "
                       "How many sheep do Lyon, Marseille, and Nice have together if Nice has 30 sheep?")
REORDERED = ("Ben's iPhone is two times older than Suzy's iPhone. Brandon's iPhone is four times as old as Ben's "
             "iPhone. If Suzy’s iPhone is 1 year old, how old is Brandon’s iPhone?")
SYNONYMS = ("Carlos is growing a citrus tree. The tree will require $90 to put in. Each annum it will yield 7 lemons, "
            "which he may vend for $1.5 apiece. It takes $3 a year to irrigate and nourish the tree. How many annums "
            "will it need before he begins making cash on the citrus tree?")
NEW_NUMBERS = ("Carlos is planting a lemon tree. The tree will cost $120 to plant. Each year it will grow 9 lemons, "
               "which he can sell for $2.5 each. It costs $4 a year to water and feed the tree. How many years will it "
               "take before he starts earning money on the lemon tree?")
REWRITTEN = ("A phone owned by Brandon has an age four times that of the phone Ben owns, and Ben's phone has double "
             "the age of Suzy's, whose phone is 1 year old. Find the age of Brandon's phone.")
REWRITTEN_TRACE = "Ben's phone is 1 * 2 = 2 years old.\nBrandon's phone is 4 * 2 = 8 years old.\n#### 8"


@pytest.fixture(scope="module")
def indexes(gsm8k_dir):
    """The new and the old index of the GSM8K test questions."""
    return near_copies.gsm8k_near_copy_index(gsm8k_dir, ("test",)), OldRule(p.question for p in load_gsm8k("test", gsm8k_dir))


def test_the_originals_are_gsm8k_test_questions(gsm8k_dir):
    questions = [p.question for p in load_gsm8k("test", gsm8k_dir)]
    assert questions[6] == TOULOUSE
    assert questions[12].startswith("Carlos is planting a lemon tree.") and questions[40].startswith("Brandon's iPhone")


@pytest.mark.parametrize("question, signal", [(RENAMED, "words"), (REORDERED, "words"), (SYNONYMS, "skeleton"),
                                              (RENAMED_NEW_NUMBERS, "words")],
                         ids=["renamed", "reordered", "synonyms", "renamed_new_numbers"])
def test_a_retold_test_question_is_flagged_where_the_13_gram_rule_misses_it(indexes, question, signal):
    new, old = indexes
    assert old.find(question) is None
    m = new.match(question)
    assert m is not None and m.label == "test" and m.reason.startswith("near_copy_test: ")
    assert new.scores(question)[signal][0] >= new.thresholds[signal]


def test_new_numbers_are_flagged_by_the_words_not_the_skeleton(indexes):
    new, old = indexes
    scores = new.scores(NEW_NUMBERS, floor=0.0)
    assert new.find(NEW_NUMBERS) == "test" and old.find(NEW_NUMBERS) == "test"
    assert scores["words"][0] == 1.0 and scores["skeleton"][0] < new.thresholds["skeleton"]
    assert new.match(NEW_NUMBERS).reference.startswith("Carlos is planting a lemon tree.")


def test_what_the_13_gram_rule_flags_stays_flagged(indexes, gsm8k_dir):
    new, old = indexes
    joseph = read_jsonl(gsm8k_dir / "train.jsonl")[406]["question"]  # shares one long sentence with test line 582
    assert old.find(joseph) == "test"
    assert new.scores(joseph)["words"][0] < new.thresholds["words"] and "shares a 13-gram" in new.match(joseph).reason


def test_a_rewritten_question_is_flagged_only_by_its_program(indexes):
    new, old = indexes
    assert old.find(REWRITTEN) is None and new.find(REWRITTEN) is None
    m = new.match(REWRITTEN, REWRITTEN_TRACE)
    assert m.label == "test" and "program" in m.reason and m.reference.startswith("Brandon's iPhone")
    assert new.find(REWRITTEN, "Ben's phone is 1 * 3 = 3 years old.\nBrandon's phone is 4 * 3 = 12 years old.\n#### 12") is None


def test_unrelated_gsm8k_questions_are_not_flagged(indexes, gsm8k_dir):
    new, _ = indexes
    train = load_gsm8k("train", gsm8k_dir)
    assert new.match(train[0].question, train[0].solution) is None  # Natalia's clips
    flagged = sum(new.find(p.question, p.solution) is not None for p in train[:400])
    assert flagged <= 8  # at most 2%: results/near-copies/measure.py measures 0.41% of all 7,473


def test_a_small_index_of_kept_problems_catches_a_retold_one():
    kept = near_copies.NearCopyIndex()
    kept.add(TOULOUSE, "kept")
    assert kept.find(RENAMED) == "kept" and kept.find(RENAMED_NEW_NUMBERS) == "kept"
    assert kept.find("Natalia sold clips to 48 of her friends in April. How many clips did she sell?") is None


def test_the_features():
    assert near_copies.wording("Tom baked 3 pies for his aunts. He ate 1.") == {
        ("bak", "pie"), ("pie", "for"), ("for", "his"), ("his", "aunt"), ("ate",)}
    assert near_copies.skeleton("Tom has 3 red pens.") == {("_", "has", "3", "_")}
    assert near_copies.stem("cookies") == near_copies.stem("cookie") and near_copies.stem("baked") == near_copies.stem("bakes")
    assert near_copies.wording(RENAMED) == near_copies.wording(TOULOUSE) != near_copies.wording(SYNONYMS)


def test_programs():
    assert near_copies.program_of("3 * 4 = 12\n12 - 2 = 10\n#### 10") == (("*", "-"), "10", (Fraction(3), Fraction(4), Fraction(2)))
    assert near_copies.program_of("3 * 4 = 12\n#### 12") is None  # one equation says little
    assert near_copies.proportional((2, 3), (4, 6)) and not near_copies.proportional((2, 3), (4, 7))
    assert not near_copies.proportional((0, 3), (1, 3))
