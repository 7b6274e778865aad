"""The job's policy server: the job runtime API's calls, forwarded by the jobforge server, answered in the worker.

It listens on a local port and reports its address and a secret through the job's result
(``PolicyServer``); the server forwards ``/sample``, ``/sample-with-response-stream``,
``/complete-rollout`` and ``/update-reward`` to it with that secret, after checking the caller's
account against the job's. Nothing else can reach it: every request without the secret is refused.

Sample takes an OpenAI chat-completions body, renders its messages with the model's chat template and
samples a completion through the batch sampler. The prompt's ids reuse the trajectory's previous
prompt and completion ids exactly when the new text extends them (so turns are never re-tokenised),
and every turn is kept with its ids, log-probabilities and policy version. The answer is a
``chat.completion`` object, or server-sent ``chat.completion.chunk`` events when ``stream`` is true.
"""

from __future__ import annotations

import functools
import hmac
import json
import queue
import secrets
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .rows import Turn
from .sampler import BatchSampler, SampleRequest
from .trajectories import RuntimeApiError, Trajectories, invalid, not_found

PROMPTS_REMEMBERED = 256  # rendered and tokenised prompts kept for the calls that send them again,
REMEMBERED_CHARS = 1 << 16  # each at most this long (an agent's huge prompt is not held for the next one)


class Usage:
    """Tokens counted for BillableTokenUsage: prompts read (prefill) and tokens sampled."""

    def __init__(self, prefill: int = 0, sampled: int = 0):
        self.lock = threading.Lock()
        self.prefill, self.sampled = prefill, sampled

    def add(self, prefill: int, sampled: int) -> None:
        with self.lock:
            self.prefill += prefill
            self.sampled += sampled


class Policy:
    """What Sample needs: the tokenizer, the sampler, the defaults of the job's sampling parameters."""

    def __init__(self, tokenizer, sampler: BatchSampler, model_name: str, max_positions: int, temperature: float,
                 top_p: float, max_tokens: int):
        self.tokenizer = tokenizer
        self.sampler = sampler
        self.model_name = model_name
        self.max_positions = max_positions
        self.defaults = {"temperature": temperature, "top_p": top_p, "max_tokens": max_tokens}
        self.stop_ids = frozenset(i for i in [tokenizer.eos_token_id] if i is not None)
        # A group's rollouts send the same first messages: rendered and tokenised once for all of them.
        self._rendered = functools.lru_cache(maxsize=PROMPTS_REMEMBERED)(self._render)
        self._encoded = functools.lru_cache(maxsize=PROMPTS_REMEMBERED)(self._encode)

    def set_defaults(self, **values) -> None:
        self.defaults.update(values)

    def render(self, body: dict) -> str:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            raise invalid("The request body must be an OpenAI chat-completions request with a non-empty "
                          "'messages' list.")
        for message in messages:
            if isinstance(message.get("content"), list):  # content parts: their text, in order
                message["content"] = "".join(p.get("text", "") for p in message["content"] if isinstance(p, dict))
        # The body came as JSON, so its JSON is the key the rendering is remembered under.
        key = json.dumps([messages, body.get("tools"), body.get("reasoning_effort") or None])
        return self._rendered(key) if len(key) <= REMEMBERED_CHARS else self._render(key)

    def _render(self, key: str) -> str:
        messages, tools, reasoning_effort = json.loads(key)
        # OpenAI's reasoning_effort reaches the template as the variable of that name (gpt-oss templates read it).
        effort = {"reasoning_effort": reasoning_effort} if reasoning_effort else {}
        try:
            return self.tokenizer.apply_chat_template(messages, tools=tools, tokenize=False,
                                                      add_generation_prompt=True, **effort)
        except Exception as err:  # the template's own complaint (a role it does not know, …)
            raise invalid(f"The messages cannot be rendered with the model's chat template: {err}") from None

    def encode(self, text: str) -> list[int]:
        return list(self._encoded(text) if len(text) <= REMEMBERED_CHARS else self._encode(text))

    def _encode(self, text: str) -> tuple[int, ...]:
        return tuple(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def parameters(self, body: dict) -> tuple[float, float, int]:
        def number(key, default, low, high):
            value = body.get(key, default)
            if value is None:
                value = default
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not low <= value <= high:
                raise invalid(f"{key} must be a number from {low} to {high}; got {value!r}.")
            return value

        if body.get("n", 1) != 1:
            raise invalid("n must be 1: each Sample call is one turn of one trajectory.")
        limit = body.get("max_completion_tokens", body.get("max_tokens"))
        max_tokens = number("max_tokens", self.defaults["max_tokens"] if limit is None else limit, 1, 1 << 20)
        return (number("temperature", self.defaults["temperature"], 0, 2),
                number("top_p", self.defaults["top_p"], 0, 1) or 1.0, int(max_tokens))


class TurnSampler:
    """Sample as the runtime API defines it: one turn of a PENDING trajectory, captured with its ids."""

    def __init__(self, policy: Policy, trajectories: Trajectories, usage: Usage):
        self.policy = policy
        self.trajectories = trajectories
        self.usage = usage

    def sample(self, trajectory_id: str, body: dict, stream) -> dict | None:
        trajectory = self.trajectories.pending(trajectory_id)
        text = self.policy.render(body)
        temperature, top_p, max_tokens = self.policy.parameters(body)
        if trajectory.context and text.startswith(trajectory.context[0]):
            prompt_ids = trajectory.context[1] + self.policy.encode(text[len(trajectory.context[0]):])
        else:
            prompt_ids = self.policy.encode(text)
        room = self.policy.max_positions - len(prompt_ids)
        if room <= 0:
            raise invalid(f"The prompt has {len(prompt_ids)} tokens; the model's context holds "
                          f"{self.policy.max_positions}.")
        request = SampleRequest(prompt_ids, min(max_tokens, room), temperature, top_p, self.policy.stop_ids,
                                on_token=stream.put if stream is not None else None)
        completion = self.policy.sampler.submit(request).result()
        ids = completion.token_ids
        with self.trajectories.lock:
            trajectory.turns.append(Turn(prompt_ids, ids, completion.logprobs, completion.temperature,
                                         completion.policy_version))
            trajectory.context = (text + self.policy.tokenizer.decode(ids), prompt_ids + ids)
        self.usage.add(len(prompt_ids), len(ids))
        content = self.policy.tokenizer.decode(ids, skip_special_tokens=True)
        return {"content": content, "finish_reason": completion.finish_reason,
                "usage": {"prompt_tokens": len(prompt_ids), "completion_tokens": len(ids),
                          "total_tokens": len(prompt_ids) + len(ids)}}

    def completion_object(self, answer: dict) -> dict:
        return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
                "model": self.policy.model_name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": answer["content"]},
                             "finish_reason": answer["finish_reason"], "logprobs": None}],
                "usage": answer["usage"]}


class PolicyServer(TurnSampler):
    """The four operations over HTTP, for the jobforge server to forward the runtime API's calls to."""

    def __init__(self, policy: Policy, trajectories: Trajectories, usage: Usage, host: str = "127.0.0.1"):
        super().__init__(policy, trajectories, usage)
        self.secret = secrets.token_urlsafe(32)
        self.closed = False
        self.httpd = ThreadingHTTPServer((host, 0), _handler_class(self))
        self.httpd.daemon_threads = True
        self.url = f"http://{host}:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, name="policy-server", daemon=True).start()

    def close(self) -> None:
        self.closed = True  # connections kept alive past this are answered as a job no longer running
        self.httpd.shutdown()
        self.httpd.server_close()


def _handler_class(server: PolicyServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in separate writes: with Nagle's algorithm the body would wait for the
        # client's delayed ACK of the headers (40 ms on Linux) on every kept-alive call.
        disable_nagle_algorithm = True

        def log_message(self, *args):  # the job's log gets what matters; not every request
            pass

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            given = self.headers.get("Authorization", "").removeprefix("Bearer ")
            if not hmac.compare_digest(given.encode(), server.secret.encode()):
                return self._error(RuntimeApiError("AccessDeniedException", 403, "Not the job's server."))
            if server.closed:
                self.close_connection = True
                return self._error(not_found("The job has no running session to sample from: it has ended."))
            try:
                body = json.loads(raw or b"{}")
                if not isinstance(body, dict):
                    raise ValueError("not an object")
            except ValueError as err:
                return self._error(invalid(f"The request body is not a JSON object: {err}"))
            path = self.path.split("?")[0]
            try:
                if path in ("/sample", "/sample-with-response-stream"):
                    trajectory_id = self.headers.get("X-Amzn-SageMaker-Trajectory-Id", "")
                    if body.get("stream") or path == "/sample-with-response-stream":
                        return self._stream(trajectory_id, body)
                    answer = server.sample(trajectory_id, body, None)
                    return self._json(200, server.completion_object(answer))
                if path == "/complete-rollout":
                    server.trajectories.complete(body.get("TrajectoryId", ""), body.get("Status") or "ready",
                                                 body.get("ClientToken"))
                    return self._json(200, {})
                if path == "/update-reward":
                    server.trajectories.reward(body.get("TrajectoryId", ""), body.get("Rewards"),
                                               body.get("ClientToken"))
                    return self._json(200, {})
            except RuntimeApiError as err:
                return self._error(err)
            except Exception as err:  # a bug or a broken model: the caller sees a retryable service error
                return self._error(RuntimeApiError("InternalServiceError", 500, f"{type(err).__name__}: {err}"))
            return self._error(RuntimeApiError("ResourceNotFoundException", 404, f"No operation at {path}"))

        def _json(self, status: int, body: dict, headers: dict | None = None):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def _error(self, err: RuntimeApiError):
            self._json(err.status, {"code": err.code, "message": err.message})

        def _stream(self, trajectory_id: str, body: dict):
            """Server-sent events: a chunk per sampled token's text, then the finish reason, then [DONE]."""
            tokens: queue.Queue = queue.Queue()
            outcome: dict = {}

            def run():
                try:
                    outcome["answer"] = server.sample(trajectory_id, body, tokens)
                except Exception as err:
                    outcome["error"] = err
                tokens.put(None)

            threading.Thread(target=run, daemon=True).start()
            first = tokens.get()
            if first is None and "error" in outcome:
                error = outcome["error"]
                return self._error(error if isinstance(error, RuntimeApiError) else RuntimeApiError(
                    "InternalServiceError", 500, f"{type(error).__name__}: {error}"))
            chunk_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            tokenizer = server.policy.tokenizer
            ids, sent = [], ""

            def event(delta: dict, finish: str | None, **extra):
                payload = {"id": chunk_id, "object": "chat.completion.chunk", "created": created,
                           "model": server.policy.model_name,
                           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
                self._chunk(f"data: {json.dumps(payload)}\n\n".encode())

            event({"role": "assistant", "content": ""}, None)
            token = first
            while token is not None:
                ids.append(token)
                text = tokenizer.decode(ids, skip_special_tokens=True)
                if len(text) > len(sent) and not text.endswith("\ufffd"):  # whole characters only
                    event({"content": text[len(sent):]}, None)
                    sent = text
                token = tokens.get()
            answer = outcome.get("answer")
            if answer is None:
                error = outcome["error"]
                event({}, "error", error={"message": str(error)})
            else:
                if len(answer["content"]) > len(sent):
                    event({"content": answer["content"][len(sent):]}, None)
                event({}, answer["finish_reason"], usage=answer["usage"])
            self._chunk(b"data: [DONE]\n\n")
            self._chunk(b"")

        def _chunk(self, data: bytes):
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

    return Handler
