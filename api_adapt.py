"""
How teacher.py's Client shapes each request, and how it adapts the shape to a model that refuses
part of it; it serves teacher.py's Client (and the run's summary).

The first request is the one every OpenAI-compatible server takes (llama.cpp, vLLM and Ollama
document `max_tokens`; Ollama lists no `max_completion_tokens` and would ignore it, leaving the
reply uncapped): model, messages with a system message, temperature, max_tokens. Reasoning models
(OpenAI's o-series and GPT-5 family) refuse some of it with a 400 that names the parameter:

    {"error": {"message": "Unsupported parameter: 'max_tokens' is not supported with this model.
     Use 'max_completion_tokens' instead.", "type": "invalid_request_error",
     "param": "max_tokens", "code": "unsupported_parameter"}}

Each such refusal the teacher can answer changes the shape once, for the rest of the run:
    max_tokens refused        -> the cap is sent as max_completion_tokens (and the other way round)
    temperature refused       -> no temperature: the model's default
    messages[0].role refused  -> the instructions are folded into the first user message
A request is asked again at most once per adaptation; a refusal it cannot answer (or the same
refusal again) stops the run with one line naming the parameter.

Example:
    shape = RequestShape()
    body = shape.body("o3", messages, 0.7, 512)        # {"model", "messages", "temperature", "max_tokens"}
    shape.adapt(refusal, body, adapted=set())          # True: ask again with shape.body(...)
"""
import json
import sys
import threading

CAP_FIELDS = ("max_tokens", "max_completion_tokens")
REFUSAL_CODES = ("unsupported_parameter", "unsupported_value")
SYSTEM_ROLE_PARAM = "messages[0].role"


class ParameterRefused(Exception):
    """A 400 whose error names one parameter the model does not take (param, code, the server's message)."""

    def __init__(self, param, code, message):
        super().__init__(f"{param}: {message}")
        self.param, self.code, self.message = param, code, message


def read_refusal(said):
    """
    The ParameterRefused in a 400's body (already redacted), or None when the body names no
    parameter with an unsupported_parameter or unsupported_value code.
    Example: read_refusal('{"error": {"param": "max_tokens", "code": "unsupported_parameter"}}').param == "max_tokens"
    """
    try:
        error = json.loads(said)["error"]
        param, code = error.get("param"), error.get("code")
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    if not isinstance(param, str) or code not in REFUSAL_CODES:
        return None
    return ParameterRefused(param, code, " ".join(str(error.get("message") or "").split())[:200])


def adaptation_for(param):
    """Which adaptation answers a refusal of param: 'cap', 'temperature', 'system_role', or None."""
    if param in CAP_FIELDS:
        return "cap"
    return {"temperature": "temperature", SYSTEM_ROLE_PARAM: "system_role"}.get(param)


def fold_system(messages):
    """
    The messages without a system message: its text opens the first user message instead.
    Example: fold_system([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}])
             == [{"role": "user", "content": "Be brief.\\n\\n2+2?"}]
    """
    if not messages or messages[0]["role"] != "system":
        return messages
    instructions, rest = messages[0]["content"], [dict(m) for m in messages[1:]]
    first_user = next((m for m in rest if m["role"] == "user"), None)
    if first_user is None:
        return [{"role": "user", "content": instructions}] + rest
    first_user["content"] = f"{instructions}\n\n{first_user['content']}"
    return rest


class RequestShape:
    """
    What every request of this run sends, shared by the worker threads: which field carries the
    token cap, whether a temperature is sent, whether the instructions go in a system message.
    Each change is said once on stderr and kept in `notes` for the summary; clients of one model
    share one shape (so one note), and a label says which model a note is about where there are two.
    Example: RequestShape().body("llama3", messages, 0.7, 512)["max_tokens"] == 512
    """

    def __init__(self, label=""):
        self.cap_field, self.send_temperature, self.system_role = "max_tokens", True, True
        self.notes, self.lock, self.label = [], threading.Lock(), label

    def body(self, model, messages, temperature, max_tokens):
        with self.lock:
            body = {"model": model, "messages": messages if self.system_role else fold_system(messages)}
            if self.send_temperature:
                body["temperature"] = temperature
            body[self.cap_field] = max_tokens
            return body

    def adapt(self, refusal, sent, adapted):
        """
        Change the shape so the refused request can be asked again; False when no adaptation
        answers this refusal, or this request already made that one (so nothing loops). The
        change may already be there (another thread made it): then only the request is asked again.
        """
        kind = adaptation_for(refusal.param)
        if kind is None or kind in adapted:
            return False
        adapted.add(kind)
        with self.lock:
            if kind == "cap" and sent.get(refusal.param) is not None and self.cap_field == refusal.param:
                self.cap_field = CAP_FIELDS[1 - CAP_FIELDS.index(refusal.param)]
                self.say(f"the server refused {refusal.param} ({refusal.code}): the token cap goes in "
                         f"{self.cap_field} for the rest of the run")
            elif kind == "temperature" and self.send_temperature:
                self.send_temperature = False
                self.say(f"the server refused temperature {sent.get('temperature')} ({refusal.code}): the samples "
                         f"use the model's default temperature for the rest of the run")
            elif kind == "system_role" and self.system_role:
                self.system_role = False
                self.say(f"the server refused the system role ({refusal.code}): the instructions open the first "
                         f"user message for the rest of the run")
        return True

    def say(self, note):
        self.notes.append(f"{self.label}{note}")
        print(f"note: {self.label}{note}", file=sys.stderr, flush=True)

    def record(self, temperature, max_tokens):
        """
        What the run's requests sent, for its summary.
        Example: RequestShape().record(0.7, 512)["token_cap_field"] == "max_tokens"
        """
        with self.lock:
            return {"token_cap_field": self.cap_field, "max_tokens": max_tokens,
                    "temperature": temperature if self.send_temperature else "model's default",
                    "instructions": "system message" if self.system_role else "folded into the first user message",
                    "adaptations": list(self.notes)}


def refusal_line(refusal, adapted):
    """
    The one-line reason a run stops at a refusal no adaptation answers.
    Example: refusal_line(ParameterRefused("max_completion_tokens", "unsupported_parameter", "..."), {"cap"})
    """
    kind = adaptation_for(refusal.param)
    if kind == "cap" and kind in adapted:
        why = "the server refuses both max_tokens and max_completion_tokens, so the reply length cannot be capped"
    elif kind in adapted:
        why = f"the server refuses {refusal.param} again after the teacher adapted to its first refusal"
    else:
        why = f"the server refuses the parameter {refusal.param!r}, which the teacher cannot do without"
    return f"{why} ({refusal.code}; the server said: {refusal.message})"
