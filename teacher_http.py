"""
What teacher.py's HTTP client needs beside its request loop: reading a Retry-After header, reading
a reply's body up to a size no reply needs (a gzip bomb fails its request instead of the run), the
token counts of its usage block (checked: a bad one is flagged, never billed), and keeping secrets
out of everything it prints or saves (the API key in every form a server may echo it, credentials
and query strings in URLs). It serves teacher.py's Client and the run's summary.

Example:
    scrub_url("https://u:pw@host/v1?key=sk-1") == "https://host/v1"
"""
import base64
import math
import re
import time
from email.utils import parsedate_to_datetime

MAX_REPLY_BYTES = 32 << 20  # a chat completion of even 100k tokens is a few MB; more is a broken or hostile server


class ReplyTooLarge(Exception):
    """A reply whose body, unpacked, passed MAX_REPLY_BYTES: its request fails at once, without retries."""


def read_capped(pieces, cap=MAX_REPLY_BYTES):
    """
    The body from its pieces (download.iter_body's, unpacked as they arrive), or ReplyTooLarge once
    they pass cap bytes: a 1 MB gzip reply that unpacks to 1.5 GB is cut off at the cap, not held.
    Example: read_capped(iter([b"ab", b"c"])) == b"abc"
    """
    body, size = [], 0
    for piece in pieces:
        size += len(piece)
        if size > cap:
            raise ReplyTooLarge(f"reply over {cap >> 20} MiB unpacked")
        body.append(piece)
    return b"".join(body)


def is_count(x):
    """Whether x, read from JSON, is a token count: a whole number of at least 0 (not a bool, NaN or Infinity)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x >= 0 and x == int(x)


def read_usage(usage):
    """
    The token counts of a reply's usage block: (prompt_tokens, completion_tokens, reasoning_tokens,
    problem). problem is None, "usage_missing" (no usage block: the reply's cost cannot be counted)
    or "usage_invalid" (a count that is not a whole number of at least 0, or more reasoning tokens
    than completion tokens, which hold them): then every count is 0, never a negative cost.
    Example: read_usage({"prompt_tokens": 9, "completion_tokens": 4}) == (9, 4, 0, None)
    """
    if usage is None or usage == {}:
        return 0, 0, 0, "usage_missing"
    try:
        details = usage.get("completion_tokens_details") or {}
        counts = (usage.get("prompt_tokens"), usage.get("completion_tokens"), details.get("reasoning_tokens") or 0)
    except AttributeError:  # a usage block, or its details, that is not an object
        return 0, 0, 0, "usage_invalid"
    if not all(is_count(x) for x in counts) or counts[2] > counts[1]:
        return 0, 0, 0, "usage_invalid"
    return (*(int(x) for x in counts), None)


def parse_retry_after(value):
    """
    Seconds to wait from a Retry-After header (seconds or an HTTP date); None if absent or unreadable.
    Example: parse_retry_after("2") == 2.0
    """
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def scrub_url(url):
    """
    A URL fit to print: without user:password@ and without the query string (both may hold keys).
    Example: scrub_url("https://u:pw@host/v1?key=sk-1") == "https://host/v1"
    """
    return re.sub(r"//[^/@]*@", "//", url).split("?")[0].split("#")[0]


def secret_forms(key):
    """
    What to redact for an API key: the key, and the base64 it turns into inside longer base64
    text (an echoed 'Authorization: Basic base64(user:key)') at each of the three byte offsets
    it can start at, in the standard and URL-safe alphabets. The characters at its two ends also
    depend on the neighbouring bytes, so they stay: they tell under two bytes of the key.
    Example: "c2stMTIzNDU2" in secret_forms("sk-123456")
    """
    raw, forms = key.encode(), {key}
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw).decode()
        core = encoded[4 * ((shift + 2) // 3):4 * ((shift + len(raw)) // 3)]  # the groups of key bytes alone
        forms |= {core, core.replace("+", "-").replace("/", "_")}
    return sorted((f for f in forms if len(f) >= 8 or f == key), key=len, reverse=True)  # short cores match by chance
