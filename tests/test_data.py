"""data.py against exact oracles: hand-made cases, a real HTTP server, and the real GSM8K files (traces: tests/test_traces.py)."""
import hashlib
import http.server
import json
import os
import random
import stat
import threading
import time

import pytest

import data
import files
import traces


# ----------------------------------------------------------------------------- download

class FileServer(http.server.ThreadingHTTPServer):
    """Serves {name: bytes}; mode 'cut' announces the full length but closes halfway, mode 'trickle'
    sends one byte every 50 ms and gives up after 5 s (bounded: the server never outlives its test)."""

    def __init__(self, files, mode="ok"):
        self.files, self.mode, self.requests = files, mode, 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(h):
                self.requests += 1
                body = self.files.get(h.path.rsplit("/", 1)[-1])
                if body is None:
                    h.send_response(404)
                    h.end_headers()
                    return
                h.send_response(200)
                h.send_header("Content-Length", str(len(body)))
                h.end_headers()
                if self.mode == "trickle":
                    stop = time.time() + 5
                    try:
                        for i in range(len(body)):
                            if time.time() > stop:
                                break
                            h.wfile.write(body[i:i + 1])
                            h.wfile.flush()
                            time.sleep(0.05)
                    except (BrokenPipeError, ConnectionResetError):  # the client gave up first
                        pass
                    h.close_connection = True
                    return
                h.wfile.write(body[: len(body) // 2] if self.mode == "cut" else body)
                h.wfile.flush()
                h.close_connection = True

            def log_message(h, *a):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}/data"


@pytest.fixture(scope="module")
def official(gsm8k_dir):
    return {n: (gsm8k_dir / n).read_bytes() for n in data.GSM8K_FILES}


def test_download_good_files_then_nothing_refetched(official, tmp_path):
    server = FileServer(official)
    data.download(tmp_path, base_url=server.url)
    for name, (_, digest) in data.GSM8K_FILES.items():
        assert hashlib.sha256((tmp_path / name).read_bytes()).hexdigest() == digest
    assert server.requests == 2
    data.download(tmp_path, base_url=server.url)
    assert server.requests == 2  # verified files are not fetched again
    server.shutdown()


def test_download_bad_checksum_leaves_nothing(official, tmp_path):
    server = FileServer({n: b.replace(b"Natalia", b"Nathalie") for n, b in official.items()})
    with pytest.raises(RuntimeError, match="sha256.*does not match"):
        data.download(tmp_path, base_url=server.url)
    assert list(tmp_path.iterdir()) == []
    server.shutdown()


def test_download_cut_mid_file_leaves_nothing(official, tmp_path):
    server = FileServer(official, mode="cut")
    with pytest.raises(RuntimeError, match="127.0.0.1"):
        data.download(tmp_path, base_url=server.url)
    assert list(tmp_path.iterdir()) == []
    server.shutdown()


def test_download_trickled_byte_by_byte_stops_at_its_deadline(official, tmp_path):
    server = FileServer(official, mode="trickle")
    t0 = time.time()
    with pytest.raises(RuntimeError, match="train.jsonl.*DeadlineExceeded"):
        data.download(tmp_path, base_url=server.url, timeout=2, deadline=0.5)
    assert time.time() - t0 < 2  # each byte comes within the 2 s read timeout: only the deadline ends it
    assert list(tmp_path.iterdir()) == []
    server.shutdown()


def test_download_unreachable_names_url_and_local_copy(tmp_path):
    with pytest.raises(RuntimeError, match=r"http://127.0.0.1:9/x/train.jsonl.*GSM8K_DIR"):
        data.download(tmp_path, base_url="http://127.0.0.1:9/x", timeout=2)


# ----------------------------------------------------------------------------- loading

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


def test_a_file_that_is_not_the_official_one_is_said_loudly_and_recorded(gsm8k_dir, tmp_path, capsys):
    assert data.file_record(gsm8k_dir / "train.jsonl") == {"name": "train.jsonl", "path": str(gsm8k_dir / "train.jsonl"), "rows": 7473,
                                                           "sha256": data.GSM8K_FILES["train.jsonl"][1], "official": True}
    data.load_gsm8k("test", gsm8k_dir)
    assert capsys.readouterr().err == ""  # the official files load in silence
    lines = (gsm8k_dir / "train.jsonl").read_text().splitlines(keepends=True)
    (tmp_path / "train.jsonl").write_text("".join(lines[:2888]))  # cut at a line boundary: every row still reads
    (tmp_path / "test.jsonl").write_text("".join((gsm8k_dir / "test.jsonl").read_text().splitlines(keepends=True)[:20]))
    assert len(data.load_gsm8k("train", tmp_path)) + len(data.load_gsm8k("val", tmp_path)) == 2888
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "NOT the official GSM8K train.jsonl: 2888 rows" in err[0] and "7473 rows" in err[0]  # once per file
    data.load_gsm8k("test", tmp_path)
    assert "NOT the official GSM8K test.jsonl: 20 rows" in capsys.readouterr().err
    record = data.file_record(tmp_path / "test.jsonl")
    assert (record["rows"], record["official"]) == (20, False) and record["sha256"] == hashlib.sha256((tmp_path / "test.jsonl").read_bytes()).hexdigest()


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


# ----------------------------------------------------------------------------- tokenizer

def test_tokenizer_round_trip_on_all_of_gsm8k(gsm8k_dir, tokenizer):
    for split in ("train", "val", "test"):
        for p in data.load_gsm8k(split, gsm8k_dir):
            for text in (p.question, traces.reference_to_trace(p.solution), p.solution):
                assert tokenizer.decode(tokenizer.encode(text)) == text


def test_tokenizer_rule_and_specials(tokenizer):
    t = tokenizer
    assert (t.pad_id, t.unk_id, t.bos_id, t.eos_id) == (0, 1, 2, 3)
    assert [t.piece(i) for i in range(4)] == ["<pad>", "<unk>", "<s>", "</s>"]
    assert t.vocab_size == data.DEFAULT_VOCAB
    # digits are single tokens, '####' and newline are one piece each
    pieces = [t.piece(i) for i in t.encode("12345 + 678 = 13023\n#### 13023")]
    assert all(len(p.strip("▁")) <= 1 for p in pieces if any(c.isdigit() for c in p))
    assert "####" in pieces and "\n" in pieces
    # the exact rule: every text round-trips unless it holds '▁', the space marker
    for text in ("naïve 日本 🙂  x", " lead", "trail ", "a\tb\r\n", "\x00", "", "<s> <pad>", "ﬁ\xa0"):
        assert t.decode(t.encode(text)) == text
    assert t.decode(t.encode("▁x")) == " x"


def test_tokenizer_deterministic_and_cached(gsm8k_dir, tokenizer, tmp_path):
    again = data.get_tokenizer(data.DEFAULT_VOCAB, gsm8k_dir, tmp_path)
    assert again.sha256 == tokenizer.sha256
    texts = data.tokenizer_texts(gsm8k_dir)
    assert not any(q.question in texts for q in data.load_gsm8k("test", gsm8k_dir)[:50])
    # the remembered key is the key of the texts; another train file is a miss, never the old key
    key, built = data.tokenizer_key(data.DEFAULT_VOCAB, gsm8k_dir, tmp_path)
    assert built is None and again.path.endswith(f"sp{data.DEFAULT_VOCAB}-{key}.model")
    assert key == hashlib.sha256(json.dumps([data.DEFAULT_VOCAB, data.SPECIAL_PIECES, texts]).encode()).hexdigest()[:10]
    edited = tmp_path / "edited"
    edited.mkdir()
    (edited / "train.jsonl").write_text((gsm8k_dir / "train.jsonl").read_text().replace("Natalia", "Nathalie", 1))
    key2, built2 = data.tokenizer_key(data.DEFAULT_VOCAB, edited, tmp_path)
    assert key2 != key and any("Nathalie" in t for t in built2)
    assert data.tokenizer_key(data.DEFAULT_VOCAB, edited, tmp_path) == (key2, None)


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



def test_write_atomic_gives_the_mode_of_any_new_file(tmp_path):
    """mkstemp makes its file 0600; the written file gets what open() would give under the umask."""
    old = os.umask(0o027)
    try:
        files.write_atomic(tmp_path / "a" / "metrics.json", "{}\n")
        assert os.umask(0o027) == 0o027  # reading the umask left it as it was
        with open(tmp_path / "plain.txt", "w") as f:
            f.write("x")
    finally:
        os.umask(old)
    assert (tmp_path / "a" / "metrics.json").read_text() == "{}\n"
    assert stat.S_IMODE((tmp_path / "a" / "metrics.json").stat().st_mode) == 0o640 == stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["metrics.json"]  # no temp file left behind
