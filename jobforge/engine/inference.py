"""Text generation out of the server process.

The server never imports torch: bedrock-runtime requests are answered by one
long-lived child process (``python -m jobforge.engine.inference``) that keeps
recently used models loaded. Requests and replies are JSON lines over its
stdin/stdout; one generation runs at a time, and each reply streams as
``{"text": piece}`` lines ending in ``{"done": …}`` or ``{"error": …}``.
A reader thread always consumes a reply to its end, so a client that hangs
up mid-stream never leaves the child blocked.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from typing import Iterator


class GenerationError(Exception):
    pass


class InferenceHost:
    def __init__(self, threads: int | None = None):
        self.threads = threads
        self._process: subprocess.Popen | None = None
        self._lock = threading.Lock()  # one generation at a time

    def _ensure(self) -> subprocess.Popen:
        if self._process is None or self._process.poll() is not None:
            env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
            if self.threads:
                env["OMP_NUM_THREADS"] = str(self.threads)
            self._process = subprocess.Popen(
                [sys.executable, "-m", "jobforge.engine.inference"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                env=env, text=True, bufsize=1)
        return self._process

    def submit(self, request: dict) -> "queue.Queue[dict]":
        """Start one generation; its reply lines arrive on the returned queue."""
        replies: queue.Queue = queue.Queue()
        threading.Thread(target=self._run, args=(request, replies), daemon=True).start()
        return replies

    def _run(self, request: dict, replies: queue.Queue) -> None:
        with self._lock:
            try:
                process = self._ensure()
                process.stdin.write(json.dumps(request) + "\n")
                process.stdin.flush()
                while True:
                    line = process.stdout.readline()
                    if not line:
                        raise GenerationError("the inference process exited")
                    reply = json.loads(line)
                    replies.put(reply)
                    if "done" in reply or "error" in reply:
                        return
            except (OSError, ValueError, GenerationError) as err:
                if self._process is not None:
                    self._process.kill()
                replies.put({"error": f"Model inference failed: {err}"})

    def stream(self, request: dict) -> Iterator[dict]:
        replies = self.submit(request)
        while True:
            reply = replies.get()
            yield reply
            if "done" in reply or "error" in reply:
                return

    def close(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()


def _serve() -> None:
    # Replies own stdout; anything a library prints goes to stderr instead.
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def send(reply: dict) -> None:
        replies.write(json.dumps(reply) + "\n")
        replies.flush()

    from jobforge.workloads.customize.generate import stream

    for line in sys.stdin:
        request = json.loads(line)
        try:
            pieces = stream(request["model_dir"], request.get("messages"), request.get("prompt"),
                            request.get("max_tokens", 512), request.get("temperature", 1.0),
                            request.get("top_p", 1.0), request.get("stop"), request.get("top_k"))
            for piece in pieces:
                send({"text": piece})
            send({"done": True, "input_tokens": pieces.input_tokens, "output_tokens": pieces.output_tokens,
                  "stop_reason": pieces.stop_reason})
        except Exception as err:  # noqa: BLE001 — reported to the caller, the process lives on
            send({"error": f"{type(err).__name__}: {err}"})


if __name__ == "__main__":
    _serve()
