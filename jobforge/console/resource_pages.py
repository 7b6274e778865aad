"""Pages for what jobs use and make: S3, models, endpoints, quantum tasks, Lambda functions and agent runtimes.

Everything here is read or changed through the services' own operations (``Caller``), as the signed-in
account in the region the page names.
"""

from __future__ import annotations

import json
import mimetypes
from collections import Counter
from urllib.parse import quote

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse

from jobforge.console import endpoint_charts
from jobforge.console.web import PREFIX, SECURITY_HEADERS, Forbidden, Web, is_htmx, signed_in
from jobforge.core import checksums
from jobforge.core.errors import ServiceError
from jobforge.server import form_upload, streaming

PAGE = 1000  # what one listing shows
LOG_EVENTS = 500
PRESIGNED_SECONDS = 3600


def _error(err: ServiceError) -> str:
    return f"{err.code}: {err.message}"


class ResourcePages:
    def __init__(self, web: Web):
        self.web = web

    async def _calls(self, session, region, *calls) -> tuple[list, list[str]]:
        """Each (service, operation, params)'s result ({} where it failed) and the failures' messages."""
        caller, results, errors = self.web.caller(session, region), [], []
        for service, operation, params in calls:
            try:
                results.append(await caller.call(service, operation, params))
            except ServiceError as err:
                results.append({})
                errors.append(f"{operation}: {_error(err)}")
        return results, errors

    # -- S3 ------------------------------------------------------------------------------------

    @signed_in()
    async def buckets(self, request: Request, session) -> Response:
        (listed,), errors = await self._calls(session, self.web.region_of(request), ("s3", "ListBuckets", {}))
        return self.web.render(request, "s3_buckets.html", session=session, buckets=listed.get("Buckets") or [],
                               errors=errors, title="S3 buckets")

    @signed_in()
    async def objects(self, request: Request, session) -> Response:
        bucket, prefix = request.path_params["bucket"], request.query_params.get("prefix", "")
        params = {"Bucket": bucket, "Prefix": prefix, "Delimiter": "/", "MaxKeys": PAGE}
        (listed,), errors = await self._calls(session, self.web.region_of(request), ("s3", "ListObjectsV2", params))
        crumbs, walked = [], ""
        for part in prefix.split("/")[:-1]:
            walked += part + "/"
            crumbs.append((part, walked))
        return self.web.render(request, "s3_objects.html", session=session, bucket=bucket, key_prefix=prefix,
                               crumbs=crumbs, folders=[p["Prefix"] for p in listed.get("CommonPrefixes") or []],
                               objects=listed.get("Contents") or [], truncated=listed.get("IsTruncated"),
                               errors=errors, presigned=None, title=f"s3://{bucket}/{prefix}")

    @signed_in()
    async def download(self, request: Request, session) -> Response:
        """An object's bytes through GetObject, streamed as an attachment."""
        bucket, key = request.path_params["bucket"], request.query_params.get("key", "")
        try:
            out = await self.web.caller(session, self.web.region_of(request)).call(
                "s3", "GetObject", {"Bucket": bucket, "Key": key})
        except ServiceError as err:
            return self.web.render(request, "not_found.html", err.status or 400, session=session,
                                   title="Cannot download", what=_error(err))
        body = out["Body"]
        name = key.rsplit("/", 1)[-1] or "object"
        headers = {**SECURITY_HEADERS, "Content-Length": str(out["ContentLength"]),
                   "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}"}
        return StreamingResponse(streaming.ThreadedStream(body.chunks, close=body.close),
                                 media_type=out.get("ContentType") or "application/octet-stream", headers=headers)

    @signed_in()
    async def upload(self, request: Request, session) -> Response:
        """A multipart form (its fields before the file, the CSRF token first) streamed to a staging file, then
        stored by PutObject."""
        bucket = request.path_params["bucket"]
        objects = self.web.runtime.object_store
        state = {}

        def on_fields(fields: dict[str, str], file_name: str | None) -> None:
            if not session.csrf_matches(fields.get("csrf")):
                raise Forbidden("The upload lacks this session's CSRF token: reload the page and try again.")
            objects.bucket(session.account_id, bucket)  # refused before any byte is staged
            state["staging"] = objects.blobs.staging([checksums.DEFAULT])

        self.web.check_origin(request)
        reader, sink = None, _LazySink(state)
        try:
            reader = form_upload.FormReader(request.headers.get("content-type", ""), on_fields)
            await streaming.pump(request.receive, reader, sink, None)
            staged = await to_thread.run_sync(sink.finish)
        except BaseException as err:
            await to_thread.run_sync(sink.abort)
            if not isinstance(err, ServiceError):
                raise
            return self._back_to(request, bucket, reader.fields.get("prefix", "") if reader else "", _error(err))
        prefix = reader.fields.get("prefix", "")
        key = prefix + (reader.fields.get("name") or reader.file_name or "upload")
        content_type = mimetypes.guess_type(key)[0] or "application/octet-stream"
        error = None
        try:
            await self.web.caller(session, self.web.region_of(request)).call(
                "s3", "PutObject", {"Bucket": bucket, "Key": key, "ContentType": content_type, "Body": staged})
        except ServiceError as err:
            error = _error(err)
        finally:
            staged.discard()
        return self._back_to(request, bucket, prefix, error)

    def _back_to(self, request: Request, bucket: str, prefix: str, error: str | None) -> Response:
        if error:
            return self.web.render(request, "not_found.html", 400, session=self.web.session_of(request),
                                   title="The action failed", what=error)
        return RedirectResponse(f"{PREFIX}/s3/{quote(bucket)}?prefix={quote(prefix)}", 303, headers=SECURITY_HEADERS)

    @signed_in()
    async def delete_object(self, request: Request, session) -> Response:
        bucket = request.path_params["bucket"]
        form = await request.form(max_files=0, max_fields=4, max_part_size=4096)
        await self.web.check_csrf(request, session, form)
        key = str(form.get("key", ""))
        error = None
        try:
            await self.web.caller(session, self.web.region_of(request)).call(
                "s3", "DeleteObject", {"Bucket": bucket, "Key": key})
        except ServiceError as err:
            error = _error(err)
        prefix = key.rsplit("/", 1)[0] + "/" if "/" in key else ""
        if is_htmx(request) and error is None:
            return Response(status_code=200, headers=SECURITY_HEADERS)  # the row is removed by the page
        return self._back_to(request, bucket, prefix, error)

    @signed_in()
    async def presign(self, request: Request, session) -> Response:
        """A presigned GET URL for one hour, signed with the session's key as an SDK would sign it."""
        bucket = request.path_params["bucket"]
        form = await request.form(max_files=0, max_fields=4, max_part_size=4096)
        await self.web.check_csrf(request, session, form)
        key = str(form.get("key", ""))
        region = self.web.region_of(request)
        try:
            await self.web.caller(session, region).call("s3", "HeadObject", {"Bucket": bucket, "Key": key})
        except ServiceError as err:
            return self._back_to(request, bucket, "", _error(err))
        credential = self.web.runtime.keys.get(session.access_key_id)
        url = await to_thread.run_sync(_presigned_get, f"{request.url.scheme}://{request.url.netloc}", region,
                                       credential, bucket, key, limiter=self.web.limiter)
        return self.web.render(request, "s3_presigned.html", session=session, bucket=bucket, key=key, url=url,
                               seconds=PRESIGNED_SECONDS, title="Presigned link")

    # -- models and endpoints ----------------------------------------------------------------------

    @signed_in()
    async def models(self, request: Request, session) -> Response:
        (foundation, custom, deployments, groups, packages, hosted), errors = await self._calls(
            session, self.web.region_of(request),
            ("bedrock", "ListFoundationModels", {}), ("bedrock", "ListCustomModels", {"maxResults": 100}),
            ("bedrock", "ListCustomModelDeployments", {"maxResults": 100}),
            ("sagemaker", "ListModelPackageGroups", {"MaxResults": 100}),
            ("sagemaker", "ListModelPackages", {"MaxResults": 100}), ("sagemaker", "ListModels", {"MaxResults": 100}))
        return self.web.render(
            request, "models.html", session=session, foundation=foundation.get("modelSummaries") or [],
            custom=custom.get("modelSummaries") or [], deployments=deployments.get("modelDeploymentSummaries") or [],
            groups=groups.get("ModelPackageGroupSummaryList") or [],
            packages=packages.get("ModelPackageSummaryList") or [], hosted=hosted.get("Models") or [], errors=errors,
            title="Models")

    @signed_in()
    async def endpoints(self, request: Request, session) -> Response:
        region = self.web.region_of(request)
        (listed,), errors = await self._calls(session, region, ("sagemaker", "ListEndpoints", {"MaxResults": 100}))
        described, more = await self._calls(session, region, *[
            ("sagemaker", "DescribeEndpoint", {"EndpointName": e["EndpointName"]}) for e in listed.get("Endpoints") or []])
        return self.web.render(request, "endpoints.html", session=session, endpoints=[d for d in described if d],
                               errors=errors + more, title="Endpoints")

    @signed_in()
    async def endpoint(self, request: Request, session) -> Response:
        """An endpoint's description and its invocation metrics' charts (their points come from the JSON below)."""
        name = request.path_params["name"]
        (described,), errors = await self._calls(session, self.web.region_of(request),
                                                 ("sagemaker", "DescribeEndpoint", {"EndpointName": name}))
        return self.web.render(request, "endpoint.html", session=session, name=name, described=described,
                               hours=endpoint_charts.HOURS, errors=errors, title=name)

    @signed_in()
    async def endpoint_metrics(self, request: Request, session) -> Response:
        """The endpoint's series per minute, through CloudWatch's ListMetrics and GetMetricData."""
        caller = self.web.caller(session, self.web.region_of(request))
        try:
            found = await to_thread.run_sync(endpoint_charts.series, caller, request.path_params["name"],
                                             limiter=self.web.limiter)
        except ServiceError as err:
            return JSONResponse({"error": _error(err)}, err.status or 400, headers=SECURITY_HEADERS)
        return JSONResponse({"series": found}, headers=SECURITY_HEADERS)

    # -- quantum tasks -----------------------------------------------------------------------------

    @signed_in()
    async def quantum_tasks(self, request: Request, session) -> Response:
        (found,), errors = await self._calls(session, self.web.region_of(request),
                                             ("braket", "SearchQuantumTasks", {"filters": [], "maxResults": 100}))
        return self.web.render(request, "quantum_tasks.html", session=session, tasks=found.get("quantumTasks") or [],
                               errors=errors, title="Quantum tasks")

    @signed_in()
    async def quantum_task(self, request: Request, session) -> Response:
        arn = request.query_params.get("arn", "")
        region = self.web.region_of(request)
        (task,), errors = await self._calls(session, region, ("braket", "GetQuantumTask", {"quantumTaskArn": arn}))
        histogram, note = [], None
        if task.get("status") == "COMPLETED":
            (results,), more = await self._calls(session, region, ("s3", "GetObject", {
                "Bucket": task["outputS3Bucket"], "Key": task["outputS3Directory"].rstrip("/") + "/results.json"}))
            errors += more
            if results:
                histogram, note = await to_thread.run_sync(_histogram, results["Body"], limiter=self.web.limiter)
        return self.web.render(request, "quantum_task.html", session=session, task=task, histogram=histogram,
                               note=note, errors=errors, title="Quantum task")

    # -- Lambda functions and agent runtimes -------------------------------------------------------------

    @signed_in()
    async def functions(self, request: Request, session) -> Response:
        (functions, agents), errors = await self._calls(
            session, self.web.region_of(request), ("lambda", "ListFunctions", {"MaxItems": 50}),
            ("bedrock-agentcore-control", "ListAgentRuntimes", {"maxResults": 100}))
        return self.web.render(request, "functions.html", session=session, functions=functions.get("Functions") or [],
                               agents=agents.get("agentRuntimes") or [], errors=errors, title="Functions and agents")

    @signed_in()
    async def function(self, request: Request, session) -> Response:
        name = request.path_params["name"]
        region = self.web.region_of(request)
        (config,), errors = await self._calls(session, region, ("lambda", "GetFunctionConfiguration",
                                                                {"FunctionName": name}))
        events, more = await self._log_events(session, region, f"/aws/lambda/{name}")
        return self.web.render(request, "resource_logs.html", session=session, heading=f"Lambda function {name}",
                               described=config, events=events, errors=errors + more, title=name)

    @signed_in()
    async def agent(self, request: Request, session) -> Response:
        runtime_id = request.path_params["runtime_id"]
        region = self.web.region_of(request)
        (described, groups), errors = await self._calls(
            session, region, ("bedrock-agentcore-control", "GetAgentRuntime", {"agentRuntimeId": runtime_id}),
            ("logs", "DescribeLogGroups", {"logGroupNamePrefix": f"/aws/bedrock-agentcore/runtimes/{runtime_id}-"}))
        events = []
        for group in groups.get("logGroups") or [] if described else []:
            found, more = await self._log_events(session, region, group["logGroupName"])
            events += found
            errors += more
        events.sort(key=lambda e: e.get("timestamp", 0))
        return self.web.render(request, "resource_logs.html", session=session,
                               heading=f"Agent runtime {described.get('agentRuntimeName', runtime_id)}",
                               described=described, events=events, errors=errors, title=runtime_id)

    async def _log_events(self, session, region, group: str) -> tuple[list, list[str]]:
        """The group's latest events, through FilterLogEvents; a group not yet written is no error."""
        try:
            out = await self.web.caller(session, region).call("logs", "FilterLogEvents",
                                                              {"logGroupName": group, "limit": LOG_EVENTS})
        except ServiceError as err:
            return [], [] if err.code == "ResourceNotFoundException" else [_error(err)]
        return out.get("events") or [], []


class _LazySink:
    """The upload's staging file, opened once the form's fields have passed (see ``on_fields``)."""

    def __init__(self, state: dict):
        self.state = state

    def write(self, data) -> None:
        self.state["staging"].write(data)

    def finish(self):
        return self.state["staging"].finish()

    def abort(self) -> None:
        if "staging" in self.state:
            self.state["staging"].abort()


def _presigned_get(endpoint: str, region: str, credential, bucket: str, key: str) -> str:
    import boto3
    from botocore.config import Config

    client = boto3.client("s3", endpoint_url=endpoint, region_name=region,
                          aws_access_key_id=credential.access_key_id, aws_secret_access_key=credential.secret_key,
                          config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
    return client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key},
                                         ExpiresIn=PRESIGNED_SECONDS)


def _histogram(body) -> tuple[list[tuple[str, int, float]], str | None]:
    """(bitstring, count, share of the largest) for a gate-model result; else a note saying why there is none."""
    try:
        result = json.loads(b"".join(body.chunks))
    finally:
        body.close()
    counts: Counter = Counter()
    if result.get("measurements"):
        counts.update("".join(str(bit) for bit in row) for row in result["measurements"])
    elif result.get("measurementProbabilities"):
        shots = (result.get("taskMetadata") or {}).get("shots") or 0
        for bits, p in result["measurementProbabilities"].items():
            counts[bits] = round(p * shots) if shots else p
    else:
        return [], "This result has no measurements to count (an exact simulation or an analog program)."
    top = max(counts.values()) or 1
    return [(bits, n, n / top) for bits, n in sorted(counts.items())], None
