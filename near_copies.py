"""
Near-copies of GSM8K test (or val) questions that share no 13-gram with them: the same story told
in other words (people renamed, sentences reordered, synonyms, new numbers). extra_problems.py's
13-gram rule (TinyGSM's) misses many of these; this check catches them.

Three signals, each a similarity to every question added to a NearCopyIndex:
    words     the question's word pairs inside each sentence (lower-case stems; numbers, punctuation
              and capitalised words, i.e. names and a sentence's first word, left out). New names,
              new numbers or another sentence order keep them.
    skeleton  the question's 4-grams of tokens inside each sentence, where a number keeps its value,
              a function word (FUNCTION_WORDS: articles, prepositions, pronouns, auxiliaries) stays
              itself and any run of other words becomes "_". Synonyms, new names and another
              sentence order keep them.
    program   only when both sides have a trace (a new problem's checked trace, a reference
              solution): the same operators in the same order, the same answer and the same or
              proportional input numbers, with a words similarity of at least PROGRAM_THRESHOLD.
    13-gram   the old rule, kept so that nothing it flagged passes now: a shared 13-gram of words
              (lower-cased, numbers and punctuation removed).
Words and skeleton are compared as sets weighted by rarity among the known questions (idf): the
weighted Jaccard similarity, looked up through an inverted index (feature -> questions), so one
check costs the postings of its own features. A question is a near-copy when a signal reaches its
threshold. The thresholds were chosen by results/near-copies/measure.py on GSM8K (the most tolerant ones
that flag at most 0.5% of train questions against test and catch at least 99.5% of the tuning half
of the test questions under each transformation); it reports the figures, held-out half included.
Example:
    ix = gsm8k_near_copy_index(None); ix.find("Mia's hens lay 16 eggs ...") == "test"
"""
import math
import re
from collections import Counter, defaultdict, namedtuple
from fractions import Fraction

from data import NUMBER, load_gsm8k, normalize_number
from traces import check_trace, reference_to_trace

# thresholds on the weighted Jaccard similarity (chosen by results/near-copies/measure.py)
WORDS_THRESHOLD = 0.4     # word pairs
SKELETON_THRESHOLD = 0.35  # numbers and function words in order
PROGRAM_THRESHOLD = 0.04  # word pairs, when the programs match (traces on both sides)
WORDING_GRAM = 2          # words per wording gram
SKELETON_GRAM = 4         # tokens per skeleton gram
MIN_EQUATIONS = 2         # a one-equation program ("3 * 4 = 12") is in many stories
NGRAM = 13                # words in a row: TinyGSM's rule, extra_problems.py's until now
SIGNALS = ("words", "skeleton", "program", "13-gram")

# closed-class words that a paraphrase with synonyms keeps: the skeleton's words
FUNCTION_WORDS = frozenset("""
a an the of and or to in on at for with from by as is are was were be has have had he she it they
his her their its them him this that these those there if then than but so not no do does did will
would can could
""".split())

TOKEN = re.compile(r"\d[\d,]*(?:\.\d+)?|[A-Za-z]+")
WORD = re.compile(r"[A-Za-z]+")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")

Match = namedtuple("Match", "label reason score reference")


def stem(word):
    """
    A crude, consistent stem of a lower-case word: plural, -ed and -ing endings, a final e removed.
    Example: stem("cookies") == stem("cookie") == "cooki"; stem("baked") == stem("bakes") == "bak"
    """
    if len(word) > 4 and word.endswith("ies"):
        word = word[:-3] + "i"
    elif len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        word = word[:-1]
    for suffix in ("ing", "ed"):
        if len(word) >= len(suffix) + 3 and word.endswith(suffix):
            word = word[:-len(suffix)]
            break
    if len(word) > 3 and word[-1] in "ey":
        word = word[:-1] + ("i" if word[-1] == "y" else "")
    return word


def ngrams(question):
    """
    The question's 13-grams of words after lower-casing and removing numbers and punctuation
    (the whole question as one gram when it is shorter): extra_problems.ngrams, TinyGSM's rule.
    Example: len(ngrams("Tom has 3 apples and buys 4 more. How many apples does Tom have now in all?")) == 3
    """
    words = re.sub(r"[^\w\s]|[\d_]", "", question.lower()).split()
    return {tuple(words[i:i + NGRAM]) for i in range(max(1, len(words) - NGRAM + 1))}


def sentence_grams(sentences, n):
    """
    The n-grams of tokens inside each sentence (a shorter sentence is one gram): sentences may
    come in any order. Example: sentence_grams([["a", "b", "c"], ["d"]], 2) == {("a", "b"), ("b", "c"), ("d",)}
    """
    return frozenset(tuple(t[i:i + n]) for t in sentences if t for i in range(max(1, len(t) - n + 1)))


def wording(question):
    """
    The question's word pairs inside each sentence: lower-case words as stems, with numbers,
    punctuation and capitalised words (names, a sentence's first word) left out, so that new
    names, new numbers and another sentence order keep them.
    Example: wording("Tom baked 3 pies for his aunts. He ate 1.") == {("bak", "pie"), ("pie", "for"), ("for", "his"), ("his", "aunt"), ("ate",)}
    """
    sentences = [[stem(w) for w in WORD.findall(s) if w[0].islower()] for s in SENTENCE_END.split(question)]
    return sentence_grams(sentences, WORDING_GRAM)


def skeleton(question):
    """
    The question's SKELETON_GRAM-grams of tokens inside each sentence: a number as its value, a
    function word as itself, a run of other words as "_"; synonyms, new names and another
    sentence order keep them. Example: skeleton("Tom has 3 red pens.") == {("_", "has", "3", "_")}
    """
    sentences = []
    for s in SENTENCE_END.split(question):
        tokens = []
        for t in TOKEN.findall(s):
            t = normalize_number(t) if t[0].isdigit() else t.lower() if t.lower() in FUNCTION_WORDS else "_"
            if not (t == "_" and tokens and tokens[-1] == "_"):
                tokens.append(t)
        sentences.append(tokens)
    return sentence_grams(sentences, SKELETON_GRAM)


def program_of(trace_or_solution):
    """
    The program of a trace or GSM8K reference solution: (operators of each equation in order,
    answer, the input numbers: operands that are no earlier result), or None with fewer than
    MIN_EQUATIONS equations or no answer.
    Example: program_of("3 * 4 = 12\\n12 - 2 = 10\\n#### 10") == (("*", "-"), "10", (Fraction(3), Fraction(4), Fraction(2)))
    """
    trace = reference_to_trace(trace_or_solution) if "<<" in trace_or_solution else trace_or_solution
    c = check_trace(trace)
    if c["n_steps"] < MIN_EQUATIONS or c["answer"] is None:
        return None
    ops, inputs, results = [], [], set()
    for step in c["steps"]:
        ops.append("".join(re.findall(r"(?<=[\d)%\s])\s*([-+*/])", step.expression)).replace(" ", ""))
        for n in filter(None, map(normalize_number, NUMBER.findall(step.expression))):
            if Fraction(n) not in results:
                inputs.append(Fraction(n))
        results.add(Fraction(normalize_number(step.claimed) or 0))
    return tuple(ops), c["answer"], tuple(inputs)


def proportional(a, b):
    """
    Whether two number sequences are equal or one is the other times a single factor.
    Example: proportional((2, 3), (4, 6)) and not proportional((2, 3), (4, 7))
    """
    if len(a) != len(b) or not a:
        return False
    if any((x == 0) != (y == 0) for x, y in zip(a, b)):
        return False
    ratios = {Fraction(y) / Fraction(x) for x, y in zip(a, b) if x != 0}
    return len(ratios) <= 1


class WeightedSets:
    """
    Sets of features with an inverted index (feature -> set numbers) and the weighted Jaccard
    similarity of a new set to them, each feature weighted by its idf among the sets added.
    Example: ws = WeightedSets(); ws.add({"hen", "egg"}); ws.similarities({"hen", "egg"}, 0.5) == {0: 1.0}
    """

    def __init__(self):
        self.sets, self.postings, self.df, self.own = [], defaultdict(list), Counter(), {}

    def add(self, features):
        """Index one more set (number len(self.sets) - 1); the cached weights are cleared. Example: ws.add({"hen", "egg"})"""
        for f in features:
            self.postings[f].append(len(self.sets))
            self.df[f] += 1
        self.sets.append(features)
        self.own.clear()

    def weight(self, feature):
        """
        The idf weight of a feature among the sets (one no set has weighs most).
        Example: WeightedSets().weight("hen") == math.log(2)
        """
        return math.log((len(self.sets) + 1) / (self.df.get(feature, 0) + 0.5))

    def own_weight(self, i):
        """The summed weight of set i's features, cached until the next add. Example: ws.own_weight(0)"""
        if i not in self.own:
            self.own[i] = sum(self.weight(f) for f in self.sets[i])
        return self.own[i]

    def similarities(self, features, floor, ids=()):
        """
        The weighted Jaccard similarity of a feature set to the sets sharing a feature whose shared
        weight reaches floor times the new set's weight (no other set can reach a similarity of
        floor), and to the sets ids whatever it is: {set number: similarity}.
        Example: WeightedSets().similarities({"hen"}, 0.5) == {}
        """
        shared = Counter()
        for f in features:
            w = self.weight(f)
            for i in self.postings.get(f, ()):
                shared[i] += w
        total = sum(self.weight(f) for f in features)
        keep = {i for i, s in shared.items() if s >= floor * total} | set(ids)
        return {i: shared[i] / (total + self.own_weight(i) - shared[i]) if shared[i] else 0.0 for i in keep}


class NearCopyIndex:
    """
    Which known question a new one is a near-copy of: add(question, label, trace_or_solution),
    then find(question, trace) gives the label of a match or None (NgramIndex's shape), and
    match(question, trace) the Match (label, reason, score, the known question) a caller can report.
    Example: ix = NearCopyIndex(); ix.add(q, "test"); ix.find(q) == "test"
    """

    def __init__(self, words=WORDS_THRESHOLD, skeleton=SKELETON_THRESHOLD, program=PROGRAM_THRESHOLD):
        self.thresholds = {"words": words, "skeleton": skeleton, "program": program, "13-gram": 1.0}
        self.questions, self.labels, self.programs, self.grams = [], [], [], {}
        self.words, self.skeletons, self.by_program = WeightedSets(), WeightedSets(), defaultdict(list)

    def add(self, question, label, trace_or_solution=None):
        """
        Index one known question, and its trace or reference solution for the program match.
        Example: ix.add(p.question, "test", p.solution)
        """
        i = len(self.questions)
        self.questions.append(question)
        self.labels.append(label)
        self.words.add(wording(question))
        self.skeletons.add(skeleton(question))
        for gram in ngrams(question):
            self.grams.setdefault(gram, i)
        program = program_of(trace_or_solution) if trace_or_solution else None
        self.programs.append(program)
        if program:
            self.by_program[program[:2]].append(i)

    def same_program(self, trace):
        """
        The known questions whose program matches the trace's (same operators and answer, proportional inputs).
        Example: ix.same_program("1 * 2 = 2\n4 * 2 = 8\n#### 8")  # [40] for the GSM8K test questions
        """
        program = program_of(trace) if trace else None
        if not program:
            return []
        return [i for i in self.by_program.get(program[:2], ()) if proportional(self.programs[i][2], program[2])]

    def sharing_a_13gram(self, question):
        """
        The known questions that share a 13-gram with a question (the first one each gram met), in order.
        Example: ix.sharing_a_13gram(load_gsm8k("test")[0].question) == [0]
        """
        return sorted({self.grams[g] for g in ngrams(question) if g in self.grams})

    def scores(self, question, trace=None, floor=None):
        """
        The best similarity of a question to a known one under each signal, {signal: (similarity,
        known question's number)}: words and skeleton down to floor (by default the lowest threshold),
        program (the words similarity of those with the same program, whatever it is; needs the trace),
        13-gram (1.0 for the first known question sharing a 13-gram).
        Example: NearCopyIndex().scores("Tom has 3 cats.") == {}
        """
        floor = min(self.thresholds.values()) if floor is None else floor
        programs = self.same_program(trace)
        words = self.words.similarities(wording(question), floor, programs)
        found = {"words": {i: s for i, s in words.items() if s >= floor},
                 "skeleton": self.skeletons.similarities(skeleton(question), floor), "program": {i: words[i] for i in programs},
                 "13-gram": {i: 1.0 for i in self.sharing_a_13gram(question)[:1]}}
        best = {k: max((s, -i) for i, s in sims.items()) for k, sims in found.items() if sims}
        return {k: (s, -i) for k, (s, i) in best.items()}  # the first known question on a tie

    def match(self, question, trace=None):
        """
        The strongest reason to call a question a near-copy of a known one, as a Match, or None:
        a signal whose similarity reaches its threshold.
        Example: NearCopyIndex().match("Tom has 3 cats.") is None
        """
        hits = [(s, -i, k) for k, (s, i) in self.scores(question, trace).items() if s >= self.thresholds[k]]
        if not hits:
            return None
        score, i, kind = max(hits)
        i = -i
        why = {"words": "shares its word pairs", "skeleton": "has its numbers and function words in order",
               "program": "has its program and answer, and shares word pairs", "13-gram": "shares a 13-gram"}[kind]
        reason = f"near_copy_{self.labels[i]}: {why} (similarity {score:.2f}) with: {self.questions[i][:80]}"
        return Match(self.labels[i], reason, score, self.questions[i])

    def find(self, question, trace=None):
        """
        The label of the known question a new one is a near-copy of, or None (NgramIndex.find's shape).
        Example: ix.find(question, trace) == "test"
        """
        m = self.match(question, trace)
        return m.label if m else None


def gsm8k_near_copy_index(data_dir, splits=("test", "val")):
    """
    A NearCopyIndex of the questions of GSM8K splits, with their reference solutions, each
    labelled by its split (extra_problems.gsm8k_index's replacement).
    Example: gsm8k_near_copy_index(None).find(load_gsm8k("test")[0].question) == "test"
    """
    index = NearCopyIndex()
    for split in splits:
        for p in load_gsm8k(split, data_dir):
            index.add(p.question, split, p.solution)
    return index
