"""
Fetching GSM8K and knowing its files: the HTTP download with a deadline per file (iter_body
reads a streamed body in pieces, so a server that trickles bytes cannot hold it; teacher.py
reads its replies with it too), and each data file's provenance (rows, sha256, and whether it is
the official release). Serves data.py (`python data.py download`, load_gsm8k's warning),
train.py and evaluate.py (the file records in metrics.json and eval.json).
"""
import hashlib
import sys
import time
from pathlib import Path

import requests
import urllib3

from files import portable_path, sha256_file, write_atomic

GSM8K_URL = "https://raw.githubusercontent.com/openai/grade-school-math/master/grade_school_math/data"
GSM8K_FILES = {  # file -> (problems, sha256) of the official release
    "train.jsonl": (7473, "17f347dc51477c50d4efb83959dbb7c56297aba886e5544ee2aaed3024813465"),
    "test.jsonl": (1319, "3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14"),
}


class DeadlineExceeded(requests.Timeout):
    """A whole transfer took longer than its wall-clock deadline (requests' timeout is per socket read)."""


def iter_body(response, deadline):
    """
    The body of a requests response opened with stream=True, in pieces as they arrive, raising
    DeadlineExceeded once time.monotonic() passes deadline. read1 returns what one socket read
    brings, so a server that trickles a byte at a time is cut off on time (iter_content waits
    until each of its chunks is full); a silent one is cut off by requests' per-read timeout.
    Example: with requests.get(url, stream=True, timeout=30) as r: body = b"".join(iter_body(r, time.monotonic() + 600))
    """
    while True:
        if time.monotonic() > deadline:
            raise DeadlineExceeded(f"{response.url}: no complete reply within the deadline")
        try:
            piece = response.raw.read1(1 << 16, decode_content=True)
        except urllib3.exceptions.ReadTimeoutError:  # raised as requests' own, as iter_content does
            raise requests.ReadTimeout(f"{response.url}: read timed out") from None
        except urllib3.exceptions.HTTPError as e:  # cut off mid-body, bad gzip, ...
            raise requests.ConnectionError(f"{response.url}: {type(e).__name__}") from None
        if not piece:
            return
        yield piece


def download(data_dir, base_url=GSM8K_URL, timeout=30.0, deadline=600.0):
    """
    Fetch train.jsonl and test.jsonl into data_dir, verify their sha256 and rename them into
    place only when it matches, so an interrupted or corrupt download leaves no file behind.
    Files already present and verified are not fetched again. timeout bounds each socket read,
    deadline (seconds) each whole file, so a server that trickles bytes cannot hang the download.
    Example: download("data/gsm8k")
    """
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    for name, (_, digest) in GSM8K_FILES.items():
        path = data_dir / name
        if path.exists() and sha256_file(path) == digest:
            continue
        url = f"{base_url}/{name}"
        try:
            ends = time.monotonic() + deadline
            with requests.get(url, stream=True, timeout=timeout) as r:
                r.raise_for_status()
                body = b"".join(iter_body(r, ends))
        except requests.RequestException as e:
            raise RuntimeError(f"could not download {url} ({type(e).__name__}); without network, "
                               f"point --data-dir or GSM8K_DIR at a folder holding {name}") from None
        got = hashlib.sha256(body).hexdigest()
        if got != digest:
            raise RuntimeError(f"{url}: sha256 {got[:12]}... does not match the official "
                               f"{digest[:12]}...; nothing was saved, try again or use a local copy")
        write_atomic(path, body)
        print(f"downloaded {url} -> {path}")
    return data_dir


def file_record(path):
    """
    What a data file is, by content, for config.json, metrics.json and eval.json: its name, path,
    rows (non-blank lines) and sha256, and for train.jsonl / test.jsonl whether it is the official
    GSM8K release. A run's numbers are only comparable with another's on the same files.
    Example: file_record("data/gsm8k/test.jsonl")["rows"] == 1319
    """
    path = Path(path)
    h, rows = hashlib.sha256(), 0
    with open(path, "rb") as f:
        for line in f:
            h.update(line)
            rows += bool(line.strip())
    record = {"name": path.name, "path": portable_path(path), "rows": rows, "sha256": h.hexdigest()}
    if path.name in GSM8K_FILES:
        record["official"] = record["sha256"] == GSM8K_FILES[path.name][1]
    return record


_warned = set()  # (path, sha256) already warned about in this process: once is loud enough


def warn_if_unofficial(path):
    """
    Print to stderr, once per file and process, when a GSM8K file is not the official release
    (a cut, edited or other file): it still loads, but its scores are not GSM8K's.
    Example: warn_if_unofficial("data/gsm8k/test.jsonl")  # silent for the official file
    """
    r = file_record(path)
    where = str(Path(path).resolve())
    if r.get("official", True) or (where, r["sha256"]) in _warned:
        return r
    _warned.add((where, r["sha256"]))
    rows, digest = GSM8K_FILES[r["name"]]
    print(f"warning: {path} is NOT the official GSM8K {r['name']}: {r['rows']} rows, sha256 {r['sha256'][:12]}... "
          f"(official: {rows} rows, {digest[:12]}...); its scores are not GSM8K scores. "
          f"`python data.py download --data-dir DIR` fetches the official file", file=sys.stderr)
    return r
