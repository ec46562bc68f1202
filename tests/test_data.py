"""data.py against exact oracles: hand-made cases and the real GSM8K files (the download: test_download.py; the tokenizer: test_tokenizer.py)."""
import json
import random

import pytest

import data
import traces


def test_splits_sizes_disjoint_and_stable(gsm8k_dir, tmp_path):
    train, val, test = (data.load_gsm8k(s, gsm8k_dir) for s in ("train", "val", "test"))
    assert len(train) + len(val) == 7473 and len(test) == 1319
    assert 250 <= len(val) <= 350
    assert not {p.question for p in train} & {p.question for p in val}
    # the same val problems whatever the file order
    lines = (gsm8k_dir / "train.jsonl").read_text().splitlines()
    random.Random(0).shuffle(lines)
    (tmp_path / "train.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "test.jsonl").write_text((gsm8k_dir / "test.jsonl").read_text())
    assert {p.question for p in data.load_gsm8k("val", tmp_path)} == {p.question for p in val}
    assert test[0].answer == "18" and test[0].id == "test-00000"


def test_corrupt_line_names_file_and_line(tmp_path):
    (tmp_path / "train.jsonl").write_text('{"question": "q", "answer": "#### 1"}\n{"question": oops\n')
    with pytest.raises(ValueError, match=r"train.jsonl:2: not valid JSON"):
        data.load_gsm8k("train", tmp_path)


@pytest.mark.parametrize("bad_row", [
    {"question": "q?", "answer": 18},                 # an integer answer: was a TypeError traceback
    {"question": None, "answer": "#### 1"},           # a null question: was a traceback
    {"question": "  ", "answer": "#### 1"},
    {"question": "q?", "answer": "no number here"},   # was trained as the target '#### no number here'
    {"question": "q?", "answer": "so 4 + 5 = 9"},     # no '####' line: the flexible rule is for outputs, not labels
    {"answer": "#### 1"}, ["q?", "#### 1"],
])
def test_bad_rows_name_file_and_line(bad_row, tmp_path):
    good = json.dumps({"question": "q?", "answer": "2 + 2 = <<2+2=4>>4\n#### 4"})
    (tmp_path / "test.jsonl").write_text(good + "\n\n" + json.dumps(bad_row) + "\n")  # the blank line counts: line 3
    with pytest.raises(ValueError, match=r"test.jsonl:3: .*fix or remove that line") as e:
        data.load_gsm8k("test", tmp_path)
    assert "\n" not in str(e.value)


def test_missing_file_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="python data.py download"):
        data.load_gsm8k("test", tmp_path)


# ----------------------------------------------------------------------------- answers

@pytest.mark.parametrize("text,expected", [
    ("so 4 + 5 = 9\n#### 9", "9"), ("#### 1,200", "1200"), ("#### $18.00.", "18"), ("#### 18.50", "18.5"),
    ("#### -3", "-3"), ("The answer is -3", "-3"), ("5 - 3 is 2", "2"), ("it is 50%", "50"),
    ("#### 7 and then 9", "7"), ("12 apples #### 0.5 #### 8", "8"), ("no number here", None), ("", None),
    ("costs $0.25.", "0.25"), ("#### .5", "0.5"), ("ends at 1,000,000.", "1000000"),
    ("#### 1.00004", "1.00004"), ("#### 2.50", "2.5"), ("#### -0.0", "0"),
])
def test_extract_answer(text, expected):
    assert data.extract_answer(text) == expected


# ----------------------------------------------------------------------------- batches

def test_batches_budget_padding_and_long_examples(gsm8k_dir, tokenizer):
    problems = data.load_gsm8k("train", gsm8k_dir)[:2000]
    ex = [data.Example(p.id, tokenizer.encode(p.question), tokenizer.encode(traces.reference_to_trace(p.solution))) for p in problems]
    kept, dropped = data.drop_long(ex, 100, 150)
    assert dropped == sum(len(e.src) > 100 or len(e.tgt) + 1 > 150 for e in ex) > 0
    assert all(len(e.src) <= 100 and len(e.tgt) < 150 for e in kept)
    batches = data.token_batches(kept, 4096, seed=1)
    assert sorted(i for b in batches for i in b) == list(range(len(kept)))
    for b in batches:
        src, tgt_in, targets = data.collate([kept[i] for i in b])
        assert src.numel() + tgt_in.numel() <= 4096 or len(b) == 1
        for row, i in enumerate(b):  # each row exactly: bos + target as input, target + eos as labels, pads after
            e, pads = kept[i], [0] * (tgt_in.size(1) - len(kept[i].tgt) - 1)
            assert src[row].tolist() == e.src + [0] * (src.size(1) - len(e.src))
            assert tgt_in[row].tolist() == [2] + e.tgt + pads and targets[row].tolist() == e.tgt + [3] + pads
    assert data.padding_fraction(kept, batches) < 0.15
    assert data.token_batches(kept, 4096, seed=1) == batches and data.token_batches(kept, 4096, seed=2) != batches


def test_collate_exact():
    src, tgt_in, targets = data.collate([data.Example("a", [5, 6], [7]), data.Example("b", [8], [9, 10])])
    assert src.tolist() == [[5, 6], [8, 0]]
    assert tgt_in.tolist() == [[2, 7, 0], [2, 9, 10]]
    assert targets.tolist() == [[7, 3, 0], [9, 10, 3]]


def test_read_traces(tmp_path):
    f = tmp_path / "t.jsonl"
    f.write_text(json.dumps({"id": "train-00001", "trace": "1 + 1 = 2\n#### 2"}) + "\n" + json.dumps({"id": "train-00001", "trace": "x"}) + "\n")
    assert data.read_traces(f) == {"train-00001": ["1 + 1 = 2\n#### 2", "x"]}
    f.write_text(json.dumps({"id": 3}) + "\n")
    with pytest.raises(ValueError, match="t.jsonl:1"):
        data.read_traces(f)
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        data.read_traces(tmp_path / "nope.jsonl")


def test_an_empty_gsm8k_file_is_named(tmp_path):
    (tmp_path / "train.jsonl").write_text("\n")
    with pytest.raises(ValueError, match="train.jsonl holds no problems"):
        data.load_gsm8k("train", tmp_path)


def test_a_folder_or_bytes_not_utf8_are_named(tmp_path):
    """train.py --traces DIR, and a traces file saved in Latin-1: one error naming the path, not a traceback."""
    with pytest.raises(FileNotFoundError, match=f"traces file {tmp_path} is a folder"):
        data.read_traces(tmp_path)
    f = tmp_path / "latin.jsonl"
    f.write_bytes(json.dumps({"id": "train-00001", "trace": "#### 2"}).encode() + b"\n" + b'{"id": "caf\xe9"}\n')
    with pytest.raises(ValueError, match="latin.jsonl: not UTF-8 text"):
        data.read_traces(f)
    f.write_text(json.dumps({"id": "a", "trace": "line\u2028same row"}, ensure_ascii=False) + "\n")
    assert data.read_traces(f) == {"a": ["line\u2028same row"]}  # only a newline ends a row
