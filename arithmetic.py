"""
Safe arithmetic: the exact value of a small arithmetic expression, read by a recursive-descent
parser over Fractions; the text is never executed. Serves traces.py (the checker and the
calculator) and reinstantiate.py (running a trace again on new numbers).

    safe_eval("16 - 3 - 4") == Fraction(9)
"""
import re
from fractions import Fraction

# Limits that keep a pathological input cheap without refusing true arithmetic on big exact
# integers (a 400-digit sum holds). There is no power operator, so a value can only grow as long
# as the text that writes it: the digits cap bounds every intermediate value (numerator and
# denominator) and the work on it; the length cap, where a long number counts as 15 characters,
# the number of operations (what was too long to read before big numbers were read still is).
MAX_EXPR_CHARS = 200       # longer text is not arithmetic we accept, a number counting 15 characters at most
MAX_DIGITS = 1000          # any number or intermediate value with more digits is rejected
LONG_NUMBER = re.compile(r"\d{16,}")
TOO_LARGE = 10 ** MAX_DIGITS
TOKEN = re.compile(r"\s*(?:(\d+(?:\.\d*)?|\.\d+)|(.))")


class ArithmeticFault(ValueError):
    """Raised for anything that is not a small, well-formed arithmetic expression."""


def safe_eval(expr):
    """
    Evaluate + - * / with parentheses, decimals, unary minus, postfix % and implicit products
    next to parentheses exactly.
    Example: safe_eval("16 - 3 - 4") == Fraction(9)
    """
    return evaluate_tokens(arithmetic_tokens(expr))


def arithmetic_tokens(expr):
    """
    The tokens of an arithmetic expression: Fractions and the characters + - * / ( ) %.
    Example: arithmetic_tokens("$1,200 * 3") == [Fraction(1200), "*", Fraction(3)]
    """
    expr = expr.replace(",", "").replace("$", "").replace("×", "*").replace("÷", "/")
    if len(expr) > 2 * MAX_DIGITS + MAX_EXPR_CHARS or len(LONG_NUMBER.sub("0" * 15, expr)) > MAX_EXPR_CHARS:
        raise ArithmeticFault(f"expression longer than {MAX_EXPR_CHARS} characters")
    tokens = []
    for num, op in TOKEN.findall(expr):
        if num:
            tokens.append(within_magnitude(Fraction(num) if len(num.replace(".", "")) <= MAX_DIGITS else too_large()))
        elif op.strip():
            if op not in "+-*/()%":
                raise ArithmeticFault(f"unexpected {op!r}")
            tokens.append(op)
    return tokens


def evaluate_tokens(tokens):
    """
    The exact value of arithmetic_tokens' output; see safe_eval.
    Example: evaluate_tokens([Fraction(2), "*", "(", Fraction(3), "+", Fraction(4), ")"]) == Fraction(14)
    """
    if not tokens:
        raise ArithmeticFault("empty expression")
    parser = ArithmeticParser(tokens)
    value = parser.expression(0)
    if parser.pos != len(tokens):
        raise ArithmeticFault(f"unexpected {tokens[parser.pos]!r}")
    return value


def within_magnitude(x):
    """x itself, if neither its numerator nor its denominator has more than MAX_DIGITS digits: every intermediate value is held to it."""
    if max(abs(x.numerator), x.denominator) >= TOO_LARGE:  # a comparison of ints: no digits are written out
        too_large()
    return x


def too_large():
    raise ArithmeticFault(f"number of more than {MAX_DIGITS} digits")


class ArithmeticParser:
    """
    A recursive-descent parser over arithmetic tokens, one method per level of precedence, loosest
    first: expression (+ -), term (* / and implicit products), unary (signs, postfix %), primary
    (a number, or an expression in parentheses). Each returns the exact value of what it read.
    Example: ArithmeticParser([Fraction(1), "+", Fraction(2), "*", Fraction(3)]).expression(0) == Fraction(7)
    """

    def __init__(self, tokens):
        self.tokens, self.pos = tokens, 0

    def peek(self):
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self):
        self.pos += 1
        return self.tokens[self.pos - 1]

    def implicit_product(self):  # "2(3 + 4)", "(1/2)(20)", "(1/4)24": written by teachers, read as products
        return self.peek() == "(" or (self.pos > 0 and self.tokens[self.pos - 1] == ")" and isinstance(self.peek(), Fraction))

    def expression(self, depth):
        if depth > 20:
            raise ArithmeticFault("nested too deeply")
        x = self.term(depth)
        while self.peek() in ("+", "-"):
            x = within_magnitude(x + self.term(depth) if self.take() == "+" else x - self.term(depth))
        return x

    def term(self, depth):
        x = self.unary(depth)
        while self.peek() in ("*", "/") or self.implicit_product():
            if self.implicit_product() or self.take() == "*":
                x = within_magnitude(x * self.unary(depth))
            else:
                d = self.unary(depth)
                if d == 0:
                    raise ArithmeticFault("division by zero")
                x = within_magnitude(x / d)
        return x

    def unary(self, depth):
        if self.peek() in ("+", "-"):
            return -self.unary(depth) if self.take() == "-" else self.unary(depth)
        x = self.primary(depth)
        while self.peek() == "%":
            self.take()
            x = within_magnitude(x / 100)
        return x

    def primary(self, depth):
        t = self.take() if self.pos < len(self.tokens) else None
        if isinstance(t, Fraction):
            return within_magnitude(t)
        if t == "(":
            x = self.expression(depth + 1)
            if self.pos >= len(self.tokens) or self.take() != ")":
                raise ArithmeticFault("unbalanced parentheses")
            return x
        raise ArithmeticFault(f"expected a number, got {t!r}")
