"""
What train.py reads, made ready and checked: GSM8K (downloaded on first use), the tokenizer
(trained on first use, by rank 0 while the other ranks wait), the train and val problems, the
traces file as it is, and the content record of each (run_folder.input_files). A missing or
malformed input stops the run with one line. Serves train.py, which chooses from what this returns.

Example:
    tok, train, val, traces, files = read_inputs(cfg, distributed.start(""))
"""
import sys

import data
from download import download
from tokenizer import TOKENIZER_DIR, get_tokenizer
import run_folder


def read_inputs(cfg, process):
    """
    GSM8K and the tokenizer (made on first use, by rank 0 while the others wait), all train and val
    problems and the traces file as it is: (tok, train, val, traces or None, input_files), or exit with one line.
    Example: tok, train, val, traces, files = read_inputs(cfg, process)
    """
    data_dir = data.resolve_data_dir(cfg.data_dir or None)
    tok_dir = cfg.tokenizer_dir or TOKENIZER_DIR
    try:
        if process.master and not ((data_dir / "train.jsonl").exists() and (data_dir / "test.jsonl").exists()):
            download(data_dir)
        process.barrier()
        tok = get_tokenizer(cfg.vocab_size, data_dir, tok_dir) if process.master else None
        process.barrier()
        tok = tok or get_tokenizer(cfg.vocab_size, data_dir, tok_dir)
        train = data.load_gsm8k("train", data_dir)
        val = data.load_gsm8k("val", data_dir)
        traces = data.read_traces(cfg.traces) if cfg.traces else None
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        sys.exit(f"error: {e}")
    return tok, train, val, traces, run_folder.input_files(cfg, data_dir)
