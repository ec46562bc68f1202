"""
A scripted chat completions server for the teacher tests: a real ThreadingHTTPServer on
127.0.0.1 (a free port) in a thread, speaking the OpenAI wire format.

The script is a function (question, n) -> action, where n counts the earlier requests about
the same question, so a test can say "429 first, then a correct reply". A FakeLLM made with
refuses=... plays a reasoning model of the OpenAI API: before the script, it answers a request
holding a field it refuses with the API's own 400 (see REFUSALS), as o-series and GPT-5 models do.
Example:
    with FakeLLM(lambda q, n: status(500) if n == 0 else ok("2 + 2 = 4\\n#### 4")) as llm:
        ...  # point teacher.py at llm.url; llm.requests lists what it received
"""
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


# The OpenAI API's 400 bodies, word for word, for what a reasoning model refuses
REFUSALS = {
    "max_tokens": ("unsupported_parameter", "Unsupported parameter: 'max_tokens' is not supported with this model. "
                                            "Use 'max_completion_tokens' instead."),
    "max_completion_tokens": ("unsupported_parameter", "Unsupported parameter: 'max_completion_tokens' is not "
                                                       "supported with this model. Use 'max_tokens' instead."),
    "temperature": ("unsupported_value", "Unsupported value: 'temperature' does not support {value} with this model. "
                                         "Only the default (1) value is supported."),
    "messages[0].role": ("unsupported_value", "Unsupported value: 'messages[0].role' does not support 'system' with "
                                              "this model."),
}


def ok(text, finish_reason="stop", prompt_tokens=100, completion_tokens=20, delay=0.0, reasoning_tokens=None):
    """A 200 reply with one choice and a usage block (with completion_tokens_details when reasoning_tokens is given:
    reasoning tokens are part of completion_tokens, as the API counts them)."""
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
             "total_tokens": prompt_tokens + completion_tokens}
    if reasoning_tokens is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": 0, "audio_tokens": 0}
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning_tokens, "audio_tokens": 0,
                                              "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
    return {"kind": "ok", "text": text, "finish_reason": finish_reason, "delay": delay, "usage": usage}


def refusal(body, refuses):
    """The API's 400 for the first field of body that a model refusing `refuses` does not take, or None."""
    for param in refuses:
        if param == "messages[0].role":
            refused = body["messages"][0]["role"] == "system"
        elif param == "temperature":
            refused = "temperature" in body and body["temperature"] != 1  # only the default is taken
        else:
            refused = param in body
        if refused:
            code, message = REFUSALS[param]
            error = {"message": message.format(value=body.get("temperature")), "type": "invalid_request_error",
                     "param": param, "code": code}
            return status(400, json.dumps({"error": error}))
    return None


def counted(text, finish_reason="stop", delay=0.0):
    """A 200 reply whose usage block estimates tokens as a real server counts them: about 4 characters a
    token (English text under GPT-style tokenizers), the prompt's messages for prompt_tokens, text for the rest."""
    return {**ok(text, finish_reason, delay=delay), "usage": None}


def estimated_usage(messages, text):
    """The usage block of a counted() reply."""
    prompt, completion = -(-sum(len(m["content"]) for m in messages) // 4), -(-len(text) // 4)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def with_usage(text, usage):
    """A 200 reply whose usage block is `usage` as given (negative counts, more reasoning than completion
    tokens, ...); usage None sends a reply without any usage block, as some servers do."""
    return {**ok(text), "usage": usage, "omit_usage": usage is None}


def status(code, body=None, headers=None):
    """An HTTP error with an OpenAI-style error body (or the given one) and extra headers."""
    body = body if body is not None else json.dumps({"error": {"message": f"scripted {code}"}})
    return {"kind": "raw", "code": code, "body": body, "headers": headers or {}}


def raw(body, code=200):
    """Any body at all, e.g. HTML where JSON was expected."""
    return {"kind": "raw", "code": code, "body": body, "headers": {}}


def stall(seconds):
    """Say nothing for `seconds` (past the client's timeout), then close."""
    return {"kind": "stall", "seconds": seconds}


def trickle(text, every, seconds):
    """A 200 reply for text sent one byte every `every` seconds, stopping (and closing) after `seconds`:
    each byte comes well within a per-read timeout, so only a deadline on the whole request ends it."""
    return {**ok(text), "kind": "trickle", "every": every, "seconds": seconds}


class ScriptedHandler(BaseHTTPRequestHandler):
    """Answers each POST as its FakeLLM (the class attribute fake) says: a refusal, else the script's action."""
    fake = None

    def log_message(self, *args):  # keep the test output clean
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        question = body["messages"][-1]["content"]
        with self.fake.lock:
            n = sum(r["question"] == question for r in self.fake.requests)
            self.fake.requests.append({"path": self.path, "question": question, "body": body, "time": time.time(),
                                       "authorization": self.headers.get("Authorization")})
        if self.path != "/v1/chat/completions":
            return self.send(404, json.dumps({"error": {"message": f"no route {self.path}"}}), {})
        action = (self.fake.refuses and refusal(body, self.fake.refuses)) or self.fake.script(question, n)
        if action["kind"] == "stall":
            self.fake.closing.wait(action["seconds"])
            return
        if action["kind"] in ("ok", "trickle"):
            self.fake.closing.wait(action.get("delay", 0.0))
            reply = {"id": f"chatcmpl-{len(self.fake.requests)}", "object": "chat.completion", "model": body["model"],
                     "choices": [{"index": 0, "message": {"role": "assistant", "content": action["text"]},
                                  "finish_reason": action["finish_reason"]}],
                 "usage": action["usage"] or estimated_usage(body["messages"], action["text"])}
            if action.get("omit_usage"):
                del reply["usage"]
            if action["kind"] == "trickle":
                return self.trickle(json.dumps(reply).encode(), action["every"], action["seconds"])
            return self.send(200, json.dumps(reply), {})
        self.send(action["code"], action["body"], action["headers"])

    def trickle(self, data, every, seconds):
        stop = time.time() + seconds  # bounded: the test's server never outlives the test
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.flush()
            for i in range(len(data)):
                if time.time() > stop or self.fake.closing.wait(every):
                    break
                self.wfile.write(data[i:i + 1])
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True

    def send(self, code, body, headers):
        data = body.encode() if isinstance(body, str) else body
        try:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up first
            pass


class FakeLLM:
    """The server, started by `with`: url to point teacher.py at, requests as received (path, question, body)."""

    def __init__(self, script, refuses=()):
        self.script, self.requests, self.lock, self.closing = script, [], threading.Lock(), threading.Event()
        self.refuses = refuses  # fields refused as a reasoning model does: keys of REFUSALS
        handler = type("Handler", (ScriptedHandler,), {"fake": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.server.handle_error = lambda request, address: None  # a client that hung up is no error here
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def count(self, question=None):
        with self.lock:
            return sum(question is None or r["question"] == question for r in self.requests)

    def __enter__(self):
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()
