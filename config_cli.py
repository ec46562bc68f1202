"""
train.py's command line and presets: every field of its config dataclass becomes a flag, its --help the text
declared beside the field (setting), and each value is checked as it is read (FLAG_TYPES,
check_config), so that a bad flag is a one-line usage error before any work, never a traceback
mid-run. Serves train.py, which passes its own dataclass and presets in (this file imports no
project module but data.py).

Example:
    cfg, resume = resolve_config(TrainConfig, PRESETS, {"mode": MODES}, __doc__, ["--preset", "smoke"])
"""
import argparse
from dataclasses import field, fields
from pathlib import Path

from cli_checks import arg_number, refuse_missing_values


def setting(default, help):
    """A config field with its --help text declared beside it (resolve_config turns fields into flags).

    Example: lr: float = setting(1e-3, "peak learning rate")
    """
    return field(default=default, metadata={"help": help})


# Named sizes (--preset): what each changes from train.TrainConfig's defaults, which are the CPU
# recipe (RESULTS.md, "The recipe"): cot, K = 16 variants, the calculator-aware loss, d128 3+3 ff 512,
# lr 1e-3, 16,000 steps of 2,048-token batches, scored with the calculator on seen stories, val and test
PRESETS = {
    # tiny and quick: the whole pipeline in under a minute on 2 CPU cores
    "smoke": dict(d_model=64, n_heads=2, n_enc_layers=1, n_dec_layers=1, d_ff=128, limit=64, epochs=4, steps=0,
                  variants=1, mask_results=False, batch_tokens=2048, warmup_steps=5, log_interval=5, eval_interval=20,
                  eval_problems=8, test_limit=32, max_new_tokens=64, lr=3e-3),
    "default": dict(),
    # the defaults of the first CPU study (RESULTS.md's history): GSM8K as it is, d256 ff 1024, 6 epochs
    "first-study": dict(variants=1, mask_results=False, d_model=256, d_ff=1024, steps=0, epochs=6, batch_tokens=8192,
                        warmup_steps=100, eval_interval=500),
    # one GPU: wider and deeper, more epochs, the full sentences of the solutions (GSM8K as it is)
    "gpu": dict(d_model=512, n_heads=8, n_enc_layers=6, n_dec_layers=6, d_ff=2048, epochs=20, steps=0, trace_format="steps",
                variants=1, mask_results=False, batch_tokens=16384, lr=5e-4, warmup_steps=200, eval_interval=250,
                eval_problems=300, eval_batch=512),
}


# What each numeric setting may be, checked as the flags are read: a bad value is a one-line usage
# error, not a traceback mid-run (--grad-accum 0), a crash after training (--eval-batch 0) or a
# silent run on something else (--limit -5 trained on all but 5 problems).
number = arg_number
FLAG_TYPES = {
    **{k: number(int, at_least=1) for k in ("vocab_size", "d_model", "n_heads", "n_enc_layers", "n_dec_layers", "d_ff", "max_src",
                                            "max_tgt", "batch_tokens", "grad_accum", "log_interval", "eval_interval",
                                            "eval_problems", "max_new_tokens", "eval_batch", "variants")},
    **{k: number(int, at_least=0) for k in ("limit", "stories", "steps", "warmup_steps", "test_limit", "stop_after_steps")},  # 0: all, none or no stop
    **{k: number(float, above=0) for k in ("epochs", "lr", "grad_clip")},
    **{k: number(float, at_least=0) for k in ("time_budget_min", "weight_decay", "answer_weight")},
    "dropout": number(float, at_least=0, below=1), "min_lr_ratio": number(float, at_least=0, at_most=1), "seed": number(int),
}


def check_config(parser, cfg, resume):
    """
    Usage errors that involve more than one flag, or the file system: exit 2 with one line, before any work.
    Example: check_config(parser, TrainConfig(d_model=6, n_heads=2), resume=False)  # exits 2: 6 is not a multiple of 4
    """
    if cfg.d_model % (2 * cfg.n_heads):
        parser.error(f"--d-model {cfg.d_model} must be a multiple of 2 x --n-heads {cfg.n_heads} (rotary positions pair up each head's channels)")
    if Path(cfg.out).exists() and not Path(cfg.out).is_dir():
        parser.error(f"--out {cfg.out} is a file, not a run folder: name a folder")
    if resume and cfg.overwrite:
        parser.error("--resume continues the run in --out, --overwrite deletes it: choose one")
    extra = Path(cfg.extra_problems) if getattr(cfg, "extra_problems", "") else None  # checked before the run folder is made
    if extra and not extra.is_file():
        parser.error(f"--extra-problems {extra} {'is a folder' if extra.is_dir() else 'not found'}: give the JSONL file that "
                     f"`python teacher.py --write-problems N ...` wrote")


def config_parser(config_class, choices, description):
    """An ArgumentParser with a flag per field of config_class (--d-model for d_model), and --resume."""
    # no abbreviated flags: run_folder.resume_command must recognise --overwrite and --stop-after-steps as written
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    for f in fields(config_class):
        flag, text = "--" + f.name.replace("_", "-"), f.metadata["help"].replace("%", "%%")  # argparse formats help
        if f.type is bool or f.type == "bool":  # --mask-results / --no-mask-results: a default of True can be turned off
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=text)
        elif f.name in choices:
            parser.add_argument(flag, choices=choices[f.name], default=None, help=text)
        else:
            parser.add_argument(flag, type=FLAG_TYPES.get(f.name, type(f.default)), default=None, help=f"{text} (default {f.default!r})")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    return parser


def resolve_config(config_class, presets, choices, description, argv=None):
    """
    Defaults, then the preset, then flags given explicitly on the command line: (config, resume).
    Example: cfg, resume = resolve_config(TrainConfig, PRESETS, {}, "", ["--mode", "answer", "--preset", "smoke"])
    """
    parser = config_parser(config_class, choices, description)
    args = parser.parse_args(argv)
    refuse_missing_values(parser, args)  # --stories=-- is a usage error, never []
    given = {k: v for k, v in vars(args).items() if v is not None and k != "resume"}
    cfg = config_class(**{**presets[given.get("preset", "default")], **given})
    cfg.out = cfg.out or f"runs/{cfg.mode}"
    check_config(parser, cfg, args.resume)
    return cfg, args.resume
