"""
A scripted chat completions server for the teacher tests: a real ThreadingHTTPServer on
127.0.0.1 (a free port) in a thread, speaking the OpenAI wire format.

The script is a function (question, n) -> action, where n counts the earlier requests about
the same question, so a test can say "429 first, then a correct reply".
Example:
    with FakeLLM(lambda q, n: status(500) if n == 0 else ok("2 + 2 = 4\\n#### 4")) as llm:
        ...  # point teacher.py at llm.url; llm.requests lists what it received
"""
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def ok(text, finish_reason="stop", prompt_tokens=100, completion_tokens=20, delay=0.0):
    """A 200 reply with one choice and a usage block."""
    return {"kind": "ok", "text": text, "finish_reason": finish_reason, "delay": delay,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}}


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


class FakeLLM:
    def __init__(self, script):
        self.script, self.requests, self.lock, self.closing = script, [], threading.Lock(), threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep the test output clean
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                question = body["messages"][-1]["content"]
                with fake.lock:
                    n = sum(r["question"] == question for r in fake.requests)
                    fake.requests.append({"path": self.path, "question": question, "body": body, "time": time.time(),
                                          "authorization": self.headers.get("Authorization")})
                if self.path != "/v1/chat/completions":
                    return self.send(404, json.dumps({"error": {"message": f"no route {self.path}"}}), {})
                action = fake.script(question, n)
                if action["kind"] == "stall":
                    fake.closing.wait(action["seconds"])
                    return
                if action["kind"] in ("ok", "trickle"):
                    fake.closing.wait(action.get("delay", 0.0))
                    reply = {"id": f"chatcmpl-{len(fake.requests)}", "object": "chat.completion", "model": body["model"],
                             "choices": [{"index": 0, "message": {"role": "assistant", "content": action["text"]},
                                          "finish_reason": action["finish_reason"]}], "usage": action["usage"]}
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
                        if time.time() > stop or fake.closing.wait(every):
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

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
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
