"""Braket devices: GetDevice and SearchDevices over the device catalogue."""

from __future__ import annotations

import hashlib
import json

import sqlalchemy as sa

from jobforge.api.base import RequestContext, handler
from jobforge.api.braket import common, hybrid_jobs
from jobforge.core.quantum_tasks import quantum_tasks
from jobforge.core import paging
from jobforge.core.errors import ServiceError, validation_error
from jobforge.core.store import jobs_table, reading


def _queues(ctx: RequestContext, device_arn: str) -> dict:
    """Queued tasks (normal and priority, i.e. from hybrid jobs) and queued hybrid jobs on a device."""
    with reading(ctx.engine) as conn:
        counts = dict(conn.execute(
            sa.select(quantum_tasks.c.job_arn.is_not(None), sa.func.count()).where(
                quantum_tasks.c.device_arn == device_arn, quantum_tasks.c.status == "QUEUED")
            .group_by(quantum_tasks.c.job_arn.is_not(None))).all())
        specs = conn.execute(sa.select(jobs_table.c.spec).where(
            jobs_table.c.family == hybrid_jobs.KIND.name, jobs_table.c.state.in_(("QUEUED", "STARTING")))).scalars()
        devices = common.catalogue()
        queued_jobs = 0
        for spec in specs:
            try:
                queued_jobs += devices.resolve(spec["deviceConfig"]["device"]) == device_arn
            except KeyError:  # a local: device of the job's own code
                pass
    return {"queued_tasks": counts.get(False, 0), "queued_priority_tasks": counts.get(True, 0),
            "queued_jobs": queued_jobs}


@handler("braket", "GetDevice", blocking=True)
def get_device(ctx: RequestContext, req: dict) -> dict:
    devices = common.catalogue()
    try:
        arn = devices.resolve(req["deviceArn"])
    except KeyError:
        raise ServiceError("ResourceNotFoundException", f"Device {req['deviceArn']} not found.") from None
    if devices.is_runnable(arn):
        ctx.runtime.quantum_tasks.warm()  # clients read a device before they run tasks on it
    return devices.get_device(arn, **_queues(ctx, arn))


@handler("braket", "SearchDevices", blocking=True)
def search_devices(ctx: RequestContext, req: dict) -> dict:
    wanted = set()
    for item in req["filters"]:
        if item["name"] != "deviceArn":
            raise validation_error(f"Filter name {item['name']} is not supported; only deviceArn is.")
        wanted.update(item["values"])
    found = [d for d in common.catalogue().list_devices() if not wanted or d["deviceArn"] in wanted]
    found.sort(key=lambda d: d["deviceArn"])
    digest = hashlib.sha256(json.dumps(sorted(wanted)).encode()).hexdigest()[:16]
    offset = 0
    if req.get("nextToken"):
        try:
            data = paging.decode(req["nextToken"])
            offset = int(data["o"])
            assert data["h"] == digest
        except (ValueError, KeyError, TypeError, AssertionError):
            raise validation_error("Invalid pagination token") from None
    limit = req.get("maxResults", 100)
    out = {"devices": found[offset:offset + limit]}
    if offset + limit < len(found):
        out["nextToken"] = paging.encode({"o": offset + limit, "h": digest})
    return out
