"""
Files written so that no reader, and no crash, ever sees half of one: the one atomic write of
the project, and the sha256 of a file. Serves every other module (data.py, model.py's
checkpoints, train.py, evaluate.py, teacher.py, ...); knows nothing of GSM8K or training.
"""
import hashlib
import json
import os
import tempfile
from pathlib import Path


def current_umask():
    """
    The process umask. Reading it means setting it: it is set to a strict 077 for that moment,
    so a file another thread creates meanwhile is never more open than meant.
    Example: current_umask() == 0o022  # the usual default
    """
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def write_atomic(path, content, fsync=False):
    """
    Write content (str as UTF-8, or bytes) to path through a temporary file in the same folder
    and a rename, so a reader (or a crash) never sees half a file; the temporary name is unique,
    so writers never collide, and a failed write removes it. fsync=True also asks the disk to
    keep the bytes through a power cut before the rename (for checkpoints).
    Example: write_atomic("runs/cot/metrics.json", json.dumps(metrics))
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes the file 0600 (private while it is a temp file); the result should have
        # the mode of any other new file, as open() would give it (0644 under the usual umask)
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(content.encode("utf-8") if isinstance(content, str) else content)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_output_file(path, flag="--out"):
    """
    Raise ValueError, in one line naming the path and what to do, unless a file can be written at
    path: it is not a folder, its folder is not a file, and that folder (or the nearest one that
    exists) is writable. Every writer of an output file calls this (or refuse_foreign, which does)
    before reading or asking anything, so no work is lost to a bad --out.
    Example: check_output_file("traces/gpt-4-eval-test.jsonl")  # returns, or raises
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{flag} {path} is a folder: give a file name such as {path / 'out.jsonl'}")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise ValueError(f"{flag} {path}: {folder} is a file, not a folder; pass another {flag}")
    if not os.access(folder, os.W_OK | os.X_OK) or path.exists() and not os.access(path, os.W_OK):
        raise ValueError(f"{flag} {path}: {folder} is not writable here; pass another {flag}")


REPOSITORY = Path(__file__).resolve().parent


def portable_path(path):
    """
    A path as results record it: relative to the repository when it lies inside it, else as given
    when relative, else its name alone (the file's sha256 and rows say which it is). Committed
    results then name no folder of the machine they were made on.
    Example: portable_path("/home/me/cot-distill/runs/cot/best.pt") == "runs/cot/best.pt"  # in a checkout there
    """
    path = Path(path)
    if not path.is_absolute():
        return str(path)
    try:
        return str(path.resolve().relative_to(REPOSITORY))
    except ValueError:
        return path.name


def write_json(path, obj):
    """
    obj as indented JSON with a final newline, written atomically: how runs keep config.json and metrics.json.
    Example: write_json("runs/cot/metrics.json", {"test_em": 0.03})
    """
    write_atomic(path, json.dumps(obj, indent=2) + "\n")


def sha256_file(path):
    """
    The sha256 of a file's bytes, read in pieces (a checkpoint need not fit in memory twice).
    Example: sha256_file("data/gsm8k/test.jsonl")[:12] == "3730d312f6e3"
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
