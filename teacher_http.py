"""
What teacher.py's HTTP client needs beside its request loop: reading a Retry-After header, and
keeping secrets out of everything it prints or saves (the API key in every form a server may
echo it, credentials and query strings in URLs). It serves teacher.py's Client and the run's summary.

Example:
    scrub_url("https://u:pw@host/v1?key=sk-1") == "https://host/v1"
"""
import base64
import re
import time
from email.utils import parsedate_to_datetime


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
