"""download.py against a real HTTP server on loopback and the real GSM8K files: verified downloads, nothing left
behind by a bad one, deadlines, and each file's provenance."""
import hashlib
import http.server
import threading
import time

import pytest

import data
import download
import files


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
    return {n: (gsm8k_dir / n).read_bytes() for n in download.GSM8K_FILES}


def test_download_good_files_then_nothing_refetched(official, tmp_path):
    server = FileServer(official)
    download.download(tmp_path, base_url=server.url)
    for name, (_, digest) in download.GSM8K_FILES.items():
        assert hashlib.sha256((tmp_path / name).read_bytes()).hexdigest() == digest
    assert server.requests == 2
    download.download(tmp_path, base_url=server.url)
    assert server.requests == 2  # verified files are not fetched again
    server.shutdown()


def test_download_bad_checksum_leaves_nothing(official, tmp_path):
    server = FileServer({n: b.replace(b"Natalia", b"Nathalie") for n, b in official.items()})
    with pytest.raises(RuntimeError, match="sha256.*does not match"):
        download.download(tmp_path, base_url=server.url)
    assert list(tmp_path.iterdir()) == []
    server.shutdown()


def test_download_cut_mid_file_leaves_nothing(official, tmp_path):
    server = FileServer(official, mode="cut")
    with pytest.raises(RuntimeError, match="127.0.0.1"):
        download.download(tmp_path, base_url=server.url)
    assert list(tmp_path.iterdir()) == []
    server.shutdown()


def test_download_trickled_byte_by_byte_stops_at_its_deadline(official, tmp_path):
    server = FileServer(official, mode="trickle")
    t0 = time.time()
    with pytest.raises(RuntimeError, match="train.jsonl.*DeadlineExceeded"):
        download.download(tmp_path, base_url=server.url, timeout=2, deadline=0.5)
    assert time.time() - t0 < 2  # each byte comes within the 2 s read timeout: only the deadline ends it
    assert list(tmp_path.iterdir()) == []
    server.shutdown()


def test_download_unreachable_names_url_and_local_copy(tmp_path):
    with pytest.raises(RuntimeError, match=r"http://127.0.0.1:9/x/train.jsonl.*GSM8K_DIR"):
        download.download(tmp_path, base_url="http://127.0.0.1:9/x", timeout=2)


# ----------------------------------------------------------------------------- loading


def test_a_file_that_is_not_the_official_one_is_said_loudly_and_recorded(gsm8k_dir, tmp_path, capsys):
    assert download.file_record(gsm8k_dir / "train.jsonl") == {"name": "train.jsonl", "path": files.portable_path(gsm8k_dir / "train.jsonl"), "rows": 7473,
                                                           "sha256": download.GSM8K_FILES["train.jsonl"][1], "official": True}
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
    record = download.file_record(tmp_path / "test.jsonl")
    assert (record["rows"], record["official"]) == (20, False) and record["sha256"] == hashlib.sha256((tmp_path / "test.jsonl").read_bytes()).hexdigest()
