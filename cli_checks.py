"""
Checks of command-line values: arg_number, an argparse type that refuses a number out of range
at parse time, with a one-line usage error; refuse_missing_values, for a flag given '--' as its
value. Serves train.py (through config_cli.py), evaluate.py, study.py and bench.py.
"""
import argparse
import math


def arg_number(kind=int, at_least=None, above=None, at_most=None, below=None):
    """
    An argparse type for a numeric flag: a finite int or float within the bounds given, else a
    one-line usage error at parse time (exit 2), never a traceback (or a silent run on nothing) later.
    Example: parser.add_argument("--epochs", type=arg_number(float, above=0))
    """
    def parse(text):
        try:
            x = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if not math.isfinite(x):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        for ok, bound, words in ((at_least is None or x >= at_least, at_least, "at least"), (above is None or x > above, above, "above"),
                                 (at_most is None or x <= at_most, at_most, "at most"), (below is None or x < below, below, "below")):
            if not ok:
                raise argparse.ArgumentTypeError(f"{text} is out of range: it must be {words} {bound}")
        return x

    parse.__name__ = kind.__name__  # argparse's own messages name the type by it
    return parse


def refuse_missing_values(parser, args):
    """
    A usage error (exit 2, one line) for a flag written --flag=-- : argparse (3.11) drops the '--'
    and stores [] for it (appends [] for an append flag), which train.py took as --stories 0 (all
    stories) and --out as no folder (runs/<mode>). No flag of ours takes an empty list otherwise.
    Example: refuse_missing_values(parser, parser.parse_args(argv))
    """
    for name, value in vars(args).items():
        if isinstance(value, list) and (not value or [] in value):
            parser.error(f"argument --{name.replace('_', '-')} needs a value, not '--'")
