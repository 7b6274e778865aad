"""The server's internal API, used only by workers: /_jobforge/worker/<job>/<action>.

Authenticated with the per-attempt worker token (a bearer token whose digest
is on the job record), so a worker of an earlier attempt cannot report.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json

from jobforge.api import recommendation_deployments
from jobforge.core import jobs, kinds
from jobforge.server.protocol.http import HttpRequest, HttpResponse

BLOCKING = ("deploy", "attach", "undeploy")  # actions that wait for model servers: run off the event loop


def _json(status: int, body: dict) -> HttpResponse:
    return HttpResponse(status, [("Content-Type", "application/json")], json.dumps(body).encode())


class InternalApi:
    def __init__(self, runtime):
        self.runtime = runtime
        self.engine = runtime.engine

    def answer_before_body(self, request: HttpRequest) -> HttpResponse | None:
        """The answer its path and worker token alone give (health, not found, refused), before the body is
        read; None for a worker's request, whose job and action ``handle`` then takes."""
        parts = request.raw_path.strip("/").split("/")
        if parts == ["_jobforge", "health"]:
            return _json(200, {"status": "ok"})
        if len(parts) != 4 or parts[1] != "worker":
            return _json(404, {"message": "Not found"})
        job = jobs.load(self.engine, parts[2])
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if job is None or not job.worker_token_hash or not hmac.compare_digest(
                hashlib.sha256(token.encode()).hexdigest(), job.worker_token_hash):
            return _json(403, {"message": "Invalid worker token"})
        action = getattr(self, "_" + parts[3], None)
        if action is None:
            return _json(404, {"message": f"Unknown action {parts[3]}"})
        request.scratch["worker"] = (job, action, parts[3] in BLOCKING)
        return None

    async def handle(self, request: HttpRequest) -> HttpResponse:
        job, action, blocking = request.scratch["worker"]
        try:
            body = json.loads(request.body or b"{}")
        except ValueError:
            return _json(400, {"message": "Invalid JSON"})
        try:
            answer = await asyncio.to_thread(action, job, body) if blocking else action(job, body)
        except recommendation_deployments.Refused as err:
            return _json(400, {"message": str(err)})
        return _json(200, answer or {})

    def _job(self, job: jobs.Job, body: dict) -> dict:
        return {"id": job.id, "arn": job.arn, "name": job.name, "account_id": job.account_id,
                "region": job.region, "workload": kinds.of(job).workload.module,
                "spec": job.spec, "resources": job.resources, "attempt": job.attempt, "family": job.family}

    def _running(self, job: jobs.Job, body: dict) -> dict:
        jobs.transition(self.engine, job.id, "RUNNING", only_from=("STARTING",), secondary=body.get("secondary"))
        return {"stop": job.state == "STOPPING"}

    def _report(self, job: jobs.Job, body: dict) -> dict:
        jobs.add_metrics(self.engine, job.id, body.get("metrics", []))
        jobs.add_logs(self.engine, job.id, body.get("stream") or job.name,
                      [(float(ts), str(text)) for ts, text in body.get("events", [])])
        status = body.get("status")
        result = body.get("result")
        if status or result:
            merged = dict(job.result, **result) if result else None
            values = {"result": merged} if merged is not None else {}
            jobs.transition(self.engine, job.id, secondary=status and status.get("secondary"),
                            message=status and status.get("message"), **values)
        return {"stop": job.state == "STOPPING"}

    def _finish(self, job: jobs.Job, body: dict) -> dict:
        self._report(job, body)
        self.runtime.scheduler.worker_reported_end(jobs.load(self.engine, job.id), body.get("outcome", "failed"),
                                                   body.get("reason"))
        return {}

    # -- an inference recommendation job's endpoints (jobforge.api.recommendation_deployments)
    def _deploy(self, job: jobs.Job, body: dict) -> dict:
        return recommendation_deployments.deploy(self.runtime, job, int(body.get("test", -1)))

    def _attach(self, job: jobs.Job, body: dict) -> dict:
        return recommendation_deployments.attach(self.runtime, job)

    def _usage(self, job: jobs.Job, body: dict) -> dict:
        return recommendation_deployments.usage(self.runtime, job, str(body.get("deployment")))

    def _undeploy(self, job: jobs.Job, body: dict) -> dict:
        return recommendation_deployments.undeploy(self.runtime, job, str(body.get("deployment")))
