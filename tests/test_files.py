"""files.py on real files: the atomic write's mode, bytes, and no temporary file left by a failed write."""
import hashlib
import os
import stat

import pytest

import files


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


def test_write_atomic_writes_bytes_and_leaves_nothing_when_it_fails(tmp_path):
    files.write_atomic(tmp_path / "ckpt.pt", b"\x00\xff")
    assert (tmp_path / "ckpt.pt").read_bytes() == b"\x00\xff"
    with pytest.raises(TypeError):
        files.write_atomic(tmp_path / "ckpt.pt", 3)  # neither text nor bytes: nothing replaced, nothing left
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"] and (tmp_path / "ckpt.pt").read_bytes() == b"\x00\xff"
    assert files.sha256_file(tmp_path / "ckpt.pt") == hashlib.sha256(b"\x00\xff").hexdigest()


def test_portable_path_names_no_folder_of_this_machine(tmp_path):
    assert files.portable_path(files.REPOSITORY / "runs" / "cot" / "best.pt") == "runs/cot/best.pt"
    assert files.portable_path("runs/cot") == "runs/cot"  # relative: as given
    assert files.portable_path(tmp_path / "gsm8k" / "train.jsonl") == "train.jsonl"  # outside the repository: the name
