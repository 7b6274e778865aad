"""Text generation out of the server process.

The server never imports torch: bedrock-runtime requests are answered by one
long-lived child process (``python -m jobforge.execution.inference``) that keeps
recently used models loaded. Requests, cancellations and replies are JSON
lines over its stdin/stdout, each tagged with the generation's id. A
generation first answers ``{"started": true}`` once its input fits the model (or
``{"error": …, "code": "ValidationException"}``), then ``{"text": piece}``
lines, then ``{"done": …}`` or ``{"error": …}``. A load (``{"load": model_dir}``), which brings a
model in ahead of its first request, answers ``{"done": true}`` once the model is loaded, or ``{"error": …}``.

Generations run side by side and take turns token by token (``FairTurns``),
so a long generation of one account never holds another's short one; a
generation whose client went away is cancelled and stops within a token.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import subprocess
import sys
import threading
from collections import Counter, OrderedDict, deque
from typing import Iterator

from jobforge.execution.supervisor import ProcessSpec, Supervisor, Unavailable

MAX_GENERATIONS_PER_ACCOUNT = 8  # each holds its attention cache and two threads in the inference process
POLL_SECONDS = 0.2  # how often a waiting consumer checks whether its client went away


class TooManyGenerations(Exception):
    """The account already has MAX_GENERATIONS_PER_ACCOUNT generations in flight."""


class GenerationCancelled(Exception):
    pass


class Generation:
    """One submitted generation, as the server sees it: its replies, and the way to stop it."""

    def __init__(self, host: "InferenceHost", generation_id: int):
        self.host, self.id = host, generation_id
        self.queue: queue.Queue = queue.Queue()
        self.finished = False

    def replies(self, stop: threading.Event | None = None) -> Iterator[dict]:
        """Reply lines up to the last (``done`` or ``error``). Ends early, cancelling the generation, once
        ``stop`` is set (the client went away) or when the consumer abandons the iterator."""
        try:
            while stop is None or not stop.is_set():
                try:
                    reply = self.queue.get(timeout=POLL_SECONDS)
                except queue.Empty:
                    continue
                if "done" in reply or "error" in reply:
                    self.finished = True
                yield reply
                if self.finished:
                    return
        finally:
            self.cancel()

    def cancel(self) -> None:
        if not self.finished:
            self.finished = True
            self.host.cancel(self.id)


class InferenceHost:
    """The server's side of the inference process, which the supervisor starts on the first generation (it
    loads models on demand, so a server never asked to generate runs none) and restarts after a crash."""

    NAME = "inference"

    def __init__(self, supervisor: Supervisor, threads: int):
        self.supervisor = supervisor
        self._lock = threading.Lock()  # its stdin and the table of generations in flight
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[Generation, str, subprocess.Popen]] = {}
        self._per_account: Counter = Counter()
        env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS=str(threads))
        supervisor.add(ProcessSpec(self.NAME, (sys.executable, "-m", "jobforge.execution.inference"), env=env,
                                   pipes=True, reserves={"cpus": threads}, on_start=self._listen))

    def _listen(self, process: subprocess.Popen) -> None:
        threading.Thread(target=self._read, args=(process,), name="inference-replies", daemon=True).start()

    def submit(self, request: dict, account: str) -> Generation:
        """Start one generation for an account; its replies arrive on the returned handle."""
        return self._open({"job": request}, account)

    def load(self, model_dir: str, account: str) -> Generation:
        """Load a model for an account ahead of its first generation (a model being brought into service); the
        returned handle's one reply is ``done`` once it is loaded, or the ``error`` that stopped it."""
        return self._open({"load": model_dir}, account)

    def _open(self, message: dict, account: str) -> Generation:
        with self._lock:
            if self._per_account[account] >= MAX_GENERATIONS_PER_ACCOUNT:
                raise TooManyGenerations()
            generation = Generation(self, next(self._ids))
            try:
                process = self.supervisor.ensure(self.NAME)
                _send(process, {"id": generation.id, "account": account, **message})
            except (OSError, Unavailable) as err:
                generation.finished = True
                generation.queue.put({"error": f"Model inference failed: {err}"})
                return generation
            self._pending[generation.id] = (generation, account, process)
            self._per_account[account] += 1
        return generation

    def cancel(self, generation_id: int) -> None:
        with self._lock:
            found = self._forget(generation_id)
            if found is not None:
                try:
                    _send(found[2], {"id": generation_id, "cancel": True})
                except OSError:
                    pass  # the process is gone, and the generation with it

    def _forget(self, generation_id: int) -> tuple | None:
        found = self._pending.pop(generation_id, None)
        if found is not None:
            account = found[1]
            self._per_account[account] -= 1
            if not self._per_account[account]:
                del self._per_account[account]
        return found

    def _read(self, process: subprocess.Popen) -> None:
        """Route the process's replies to their generations, always reading to the end of its output."""
        for line in process.stdout:
            try:
                reply = json.loads(line)
            except ValueError:
                continue
            generation_id = reply.pop("id", None)
            with self._lock:
                if "done" in reply or "error" in reply:
                    found = self._forget(generation_id)
                else:
                    found = self._pending.get(generation_id)
            if found is not None:
                found[0].queue.put(reply)
        with self._lock:
            orphans = [self._forget(generation_id) for generation_id, found in list(self._pending.items())
                       if found[2] is process]
        for generation, *_ in orphans:
            generation.queue.put({"error": "Model inference failed: the inference process exited"})


def _send(process: subprocess.Popen, message: dict) -> None:
    process.stdin.write(json.dumps(message) + "\n")
    process.stdin.flush()


class FairTurns:
    """Which generation runs the next model step: the accounts waiting are served in turn, and an account's
    own generations in turn.

    One step runs at a time (each step already uses every core the host gives inference) and every
    generation hands the turn on after each token, so a request waits for at most one step of each other
    account's generations before its own, however long they are. Token-step turns rather than batching:
    requests differ in model, length and sampling settings, and each keeps Hugging Face's own generate().
    """

    def __init__(self):
        self._changed = threading.Condition()
        self._holder: Turn | None = None
        self._waiting: OrderedDict[str, deque] = OrderedDict()  # account -> its turns waiting, accounts in order

    def turn(self, account: str) -> "Turn":
        return Turn(self, account)

    def _take(self, turn: "Turn", just_served: bool = False) -> None:
        """Wait for the turn (caller holds the condition's lock); an account just served waits behind the others."""
        self._waiting.setdefault(turn.account, deque()).append(turn)
        if just_served:
            self._waiting.move_to_end(turn.account)
        self._hand_on()
        while self._holder is not turn and not turn.cancelled:
            self._changed.wait()
        if turn.cancelled:
            self._leave(turn)
            raise GenerationCancelled()

    def _hand_on(self) -> None:
        if self._holder is None and self._waiting:
            account, turns = self._waiting.popitem(last=False)
            self._holder = turns.popleft()
            if turns:
                self._waiting[account] = turns  # the account's next generation waits behind the other accounts
            self._changed.notify_all()

    def _leave(self, turn: "Turn") -> None:
        if self._holder is turn:
            self._holder = None
        else:
            turns = self._waiting.get(turn.account)
            if turns is not None and turn in turns:
                turns.remove(turn)
                if not turns:
                    del self._waiting[turn.account]
        self._hand_on()


class Turn:
    """One generation's place in FairTurns: held around its generate() call, handed on after every token."""

    def __init__(self, turns: FairTurns, account: str):
        self.turns, self.account = turns, account
        self.cancelled = False

    def __enter__(self) -> "Turn":
        with self.turns._changed:
            self.turns._take(self)
        return self

    def __exit__(self, *exc) -> None:
        with self.turns._changed:
            self.turns._leave(self)

    def next_token(self) -> None:
        with self.turns._changed:
            if self.cancelled:
                raise GenerationCancelled()
            if self.turns._waiting:
                self.turns._holder = None
                self.turns._take(self, just_served=True)

    def cancel(self) -> None:
        with self.turns._changed:
            self.cancelled = True
            self.turns._changed.notify_all()


def _serve() -> None:
    # Replies own stdout; anything a library prints goes to stderr instead.
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    writing = threading.Lock()

    def send(generation_id: int, **reply) -> None:
        with writing:
            replies.write(json.dumps({"id": generation_id, **reply}) + "\n")
            replies.flush()

    from jobforge.workloads.customize.generate import RequestRejected, Stream, load

    turns = FairTurns()
    running: dict[int, Turn] = {}

    def run(generation_id: int, job: dict, turn: Turn) -> None:
        try:
            pieces = Stream(job["model_dir"], job.get("messages"), job.get("prompt"), job.get("max_tokens"),
                            job.get("temperature", 1.0), job.get("top_p", 1.0), job.get("stop"), job.get("top_k"),
                            default_max_tokens=job.get("default_max_tokens", 512),
                            max_tokens_limit=job.get("max_tokens_limit"), pacing=turn)
            send(generation_id, started=True)
            for piece in pieces:
                send(generation_id, text=piece)
            send(generation_id, done=True, input_tokens=pieces.input_tokens, output_tokens=pieces.output_tokens,
                 stop_reason=pieces.stop_reason)
        except RequestRejected as err:
            send(generation_id, error=str(err), code="ValidationException")
        except GenerationCancelled:
            send(generation_id, error="cancelled")
        except Exception as err:  # noqa: BLE001 — reported to the caller, the process lives on
            send(generation_id, error=f"{type(err).__name__}: {err}")
        finally:
            running.pop(generation_id, None)

    def bring_in(generation_id: int, model_dir: str) -> None:
        try:
            load(model_dir)
            send(generation_id, done=True)
        except Exception as err:  # noqa: BLE001 — reported to the caller, the process lives on
            send(generation_id, error=f"{type(err).__name__}: {err}")

    for line in sys.stdin:
        message = json.loads(line)
        if "load" in message:
            threading.Thread(target=bring_in, args=(message["id"], message["load"]), daemon=True).start()
            continue
        if message.get("cancel"):
            turn = running.get(message["id"])
            if turn is not None:
                turn.cancel()
            continue
        turn = running[message["id"]] = turns.turn(message["account"])
        threading.Thread(target=run, args=(message["id"], message["job"], turn), daemon=True).start()


if __name__ == "__main__":
    _serve()
