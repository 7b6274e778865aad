"""The job list and the job page: live rows, status timeline, metrics, logs, artifacts, Stop and Delete."""

from __future__ import annotations

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from jobforge.console import job_records
from jobforge.console.families import family
from jobforge.console.job_records import Filters
from jobforge.console.web import PREFIX, SECURITY_HEADERS, Web, is_htmx, signed_in
from jobforge.core import kinds
from jobforge.core.errors import ServiceError
from jobforge.core.jobs import STATES

VERSION_HEADER = "x-console-version"  # when the list the page shows last changed; an unchanged list answers 204
DELTA_HEADER = "x-console-delta"  # the answer holds only the rows changed since that version
ARTIFACT_LIMIT = 200


class JobPages:
    def __init__(self, web: Web):
        self.web = web

    def _thread(self, fn, *args):
        return to_thread.run_sync(fn, *args, limiter=self.web.limiter)

    @staticmethod
    def _filters(request: Request) -> Filters:
        query = request.query_params
        return Filters(query.get("family", "")[:64], query.get("status", "")[:16], query.get("search", "")[:256])

    @signed_in()
    async def index(self, request: Request, session) -> Response:
        return RedirectResponse(f"{PREFIX}/jobs", 303, headers=SECURITY_HEADERS)

    @signed_in()
    async def list_page(self, request: Request, session) -> Response:
        engine, filters = self.web.runtime.engine, self._filters(request)
        version = await self._thread(job_records.last_change, engine, session.account_id)
        rows = await self._thread(job_records.list_jobs, engine, session.account_id, filters)
        known = await self._thread(job_records.families_of, engine, session.account_id)
        return self.web.render(request, "jobs.html", session=session, rows=rows, filters=filters, version=version,
                               families=sorted(set(known) | set(kinds.KINDS)), states=STATES, title="Jobs")

    @signed_in()
    async def rows(self, request: Request, session) -> Response:
        """The list's rows. A poll names the version its page shows and gets only the rows changed since (each
        marked whether it still passes the filters), or 204 when none has; a change of filters gets them all."""
        engine, filters = self.web.runtime.engine, self._filters(request)
        since = _version(request)
        if since is None:
            version = await self._thread(job_records.last_change, engine, session.account_id)
            rows = await self._thread(job_records.list_jobs, engine, session.account_id, filters)
            return self.web.render(request, "job_rows.html", session=session, rows=rows,
                                   headers={VERSION_HEADER: repr(version)})
        changed = await self._thread(job_records.changed_since, engine, session.account_id, since)
        if not changed:
            return Response(status_code=204, headers=SECURITY_HEADERS)
        version = max(row.updated_at for row in changed)
        return self.web.render(request, "job_rows.html", session=session, rows=changed, delta=True,
                               listed={row.id: filters.matches(row) for row in changed},
                               headers={VERSION_HEADER: repr(version), DELTA_HEADER: "1"})

    async def _job(self, request: Request, session):
        job = await self._thread(job_records.find, self.web.runtime.engine, session.account_id,
                                 request.path_params["job_id"])
        return job

    def _not_found(self, request: Request, session) -> Response:
        return self.web.render(request, "not_found.html", 404, session=session, title="Not found",
                               what="No job of this account has that id.")

    @signed_in()
    async def job_page(self, request: Request, session) -> Response:
        job = await self._job(request, session)
        if job is None:
            return self._not_found(request, session)
        described = await self._thread(kinds.of(job).describe, self.web.runtime.engine, job)
        recommendations = described.get("InferenceRecommendations") if job.family == "sagemaker-recommendation" \
            else None
        return self.web.render(request, "job.html", session=session, job=job, family=family(job.family),
                               timeline=job_records.timeline(job), described=described,
                               recommendations=recommendations, title=job.name)

    @signed_in()
    async def status(self, request: Request, session) -> Response:
        job = await self._job(request, session)
        if job is None:
            return self._not_found(request, session)
        return self._status(request, session, job)

    def _status(self, request, session, job, error: str | None = None, status: int = 200) -> Response:
        headers = {"HX-Trigger": "job-ended"} if job.terminal else {}
        return self.web.render(request, "job_status.html", status, headers, session=session, job=job,
                               family=family(job.family), timeline=job_records.timeline(job), error=error)

    @signed_in()
    async def updates(self, request: Request, session) -> Response:
        """New metric points and log lines since the ids the page has, and whether the job has ended."""
        job = await self._job(request, session)
        if job is None:
            return JSONResponse({"message": "No such job"}, 404, headers=SECURITY_HEADERS)
        engine = self.web.runtime.engine
        metrics = await self._thread(job_records.metrics, engine, job.id, _int(request, "metrics_after"))
        logs = await self._thread(job_records.logs, engine, job.id, _int(request, "logs_after"))
        return JSONResponse({"terminal": job.terminal, "status": job.status,
                             "metrics": [[m["id"], m["name"], m["value"], m["step"], m["timestamp"]] for m in metrics],
                             "logs": [[line["id"], line["timestamp"], line["message"]] for line in logs]},
                            headers=SECURITY_HEADERS)

    @signed_in()
    async def artifacts(self, request: Request, session) -> Response:
        """The job's outputs, listed by ListObjectsV2 as the signed-in account."""
        job = await self._job(request, session)
        if job is None:
            return self._not_found(request, session)
        prefix, objects, error = job_records.output_prefix(job), [], None
        if prefix:
            bucket, _, key = prefix.removeprefix("s3://").partition("/")
            try:
                listed = await self.web.caller(session, job.region).call(
                    "s3", "ListObjectsV2", {"Bucket": bucket, "Prefix": key, "MaxKeys": ARTIFACT_LIMIT})
                objects = [{"bucket": bucket, **item} for item in listed.get("Contents") or []]
            except ServiceError as err:
                error = f"{err.code}: {err.message}"
        return self.web.render(request, "job_artifacts.html", session=session, output_prefix=prefix, objects=objects,
                               error=error, job=job)

    @signed_in()
    async def stop(self, request: Request, session) -> Response:
        return await self._act(request, session, "stop")

    @signed_in()
    async def delete(self, request: Request, session) -> Response:
        return await self._act(request, session, "delete")

    async def _act(self, request: Request, session, action: str) -> Response:
        """Stop or Delete through the family's own operation, as the signed-in account."""
        form = await request.form(max_files=0, max_fields=4, max_part_size=1024)
        await self.web.check_csrf(request, session, form)
        job = await self._job(request, session)
        if job is None:
            return self._not_found(request, session)
        operation = getattr(family(job.family), action)
        error = None
        if operation is None:
            error = f"The {job.family} API has no operation to {action} a job."
        else:
            service, name, params = operation
            try:
                await self.web.caller(session, job.region).call(service, name, params(job))
            except ServiceError as err:
                error = f"{err.code}: {err.message}"
        if action == "delete" and error is None:
            target = f"{PREFIX}/jobs"
            if is_htmx(request):
                return Response(status_code=204, headers={**SECURITY_HEADERS, "HX-Redirect": target})
            return RedirectResponse(target, 303, headers=SECURITY_HEADERS)
        if not is_htmx(request):
            return RedirectResponse(f"{PREFIX}/jobs/{job.id}", 303, headers=SECURITY_HEADERS)
        job = await self._job(request, session) or job
        return self._status(request, session, job, error, 400 if error else 200)


def _version(request: Request) -> float | None:
    try:
        return float(request.headers[VERSION_HEADER])
    except (KeyError, ValueError):
        return None


def _int(request: Request, name: str) -> int:
    try:
        return max(0, int(request.query_params.get(name, "0")))
    except ValueError:
        return 0
