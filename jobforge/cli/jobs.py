"""jobforge jobs list | describe | logs | watch — read from the job store.

These read the store directly (SQLite allows readers beside the running
server; for PostgreSQL pass --database-url), so they work for every family.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time

import sqlalchemy as sa

from jobforge.config import Settings
from jobforge.core import jobs
from jobforge.core.store import create_engine, jobs_table, reading


def _engine(args) -> sa.Engine:
    settings = Settings(data_dir=args.data_dir, database_url=args.database_url)
    if settings.database_url is None and not (settings.data_dir / "jobforge.db").exists():
        sys.exit(f"No jobforge data in {settings.data_dir} (use --data-dir)")
    return create_engine(settings.db_url)


def _find(engine, ident: str) -> jobs.Job:
    """The job an id, ARN or name names; a name used by jobs of several accounts, regions or families is
    refused."""
    with reading(engine) as conn:
        rows = conn.execute(sa.select(jobs_table).where(sa.or_(
            jobs_table.c.id == ident, jobs_table.c.arn == ident, jobs_table.c.name == ident))
            .order_by(jobs_table.c.created_at.desc())).all()
    if not rows:
        sys.exit(f"No job {ident!r}")
    if len({(row.account_id, row.region, row.family) for row in rows}) > 1:
        sys.exit(f"{ident!r} names jobs of several accounts, regions or families; use one of their ARNs:\n"
                 + "\n".join(f"  {row.arn}" for row in rows))
    return jobs.Job.from_row(rows[0])


def _when(epoch):
    return dt.datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S") if epoch else "-"


def list_cmd(args) -> None:
    engine = _engine(args)
    query = sa.select(jobs_table).order_by(jobs_table.c.created_at.desc()).limit(args.limit)
    if args.family:
        query = query.where(jobs_table.c.family.startswith(args.family))
    with reading(engine) as conn:
        rows = [jobs.Job.from_row(r) for r in conn.execute(query)]
    print(f"{'NAME':32} {'FAMILY':28} {'ACCOUNT':12} {'REGION':14} {'STATE':10} {'CREATED':19}  ID")
    for job in rows:
        print(f"{job.name[:32]:32} {job.family[:28]:28} {job.account_id:12} {job.region[:14]:14} {job.state:10} "
              f"{_when(job.created_at)}  {job.id}")


def describe_cmd(args) -> None:
    engine = _engine(args)
    job = _find(engine, args.job)
    if args.api:
        print(json.dumps(_as_the_api_describes_it(engine, job), indent=2, default=_json_value))
        return
    record = {k: v for k, v in vars(job).items() if k != "worker_token_hash"}
    print(json.dumps(record, indent=2, default=str))


def _as_the_api_describes_it(engine: sa.Engine, job: jobs.Job) -> dict:
    from jobforge.core import kinds
    from jobforge.server.app import load_api_modules

    load_api_modules(Settings().plugins)  # the kinds are declared by the modules that serve them
    kind = kinds.get(job.family)
    if kind is None:
        sys.exit(f"No module declares jobs of kind {job.family!r} here (is its plugin in JOBFORGE_PLUGINS?); "
                 "leave out --api for the job's record")
    return kind.describe(engine, job)


def _json_value(value):
    return value.isoformat() if isinstance(value, (dt.datetime, dt.date)) else str(value)


def logs_cmd(args) -> None:
    engine = _engine(args)
    job = _find(engine, args.job)
    last = 0
    while True:
        for line in jobs.logs(engine, job.id, after_id=last):
            last = line["id"]
            print(f"{_when(line['timestamp'])}  {line['message']}", flush=True)
        if not args.follow or jobs.load(engine, job.id).terminal:
            return
        time.sleep(1)


def watch_cmd(args) -> None:
    from tqdm import tqdm

    engine = _engine(args)
    job = _find(engine, args.job)
    last_metric = 0
    bar = tqdm(total=1000, desc=job.name, unit="‰", bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}")
    latest: dict[str, float] = {}
    while True:
        job = jobs.load(engine, job.id)
        for metric in jobs.metrics(engine, job.id, after_id=last_metric):
            last_metric = metric["id"]
            latest[metric["name"]] = metric["value"]
        progress = latest.get("progress")
        if progress is not None:
            bar.n = int(min(max(progress, 0.0), 1.0) * 1000)
        shown = {k: f"{v:.4g}" for k, v in latest.items() if k != "progress"}
        bar.set_postfix({"state": job.state, "phase": job.secondary_status or "-", **shown}, refresh=True)
        if job.terminal:
            if job.state == "COMPLETED":
                bar.n = 1000
            bar.refresh()
            bar.close()
            print(f"{job.name}: {job.state}" + (f" — {job.failure_reason}" if job.failure_reason else ""))
            return
        time.sleep(args.interval)


def add_parser(sub) -> None:
    p = sub.add_parser("jobs", help="inspect jobs of every family")
    jsub = p.add_subparsers(dest="jobs_command", required=True)
    q = jsub.add_parser("list", help="recent jobs")
    q.add_argument("--family", help="e.g. braket-job, bedrock-customization, sagemaker-job")
    q.add_argument("--limit", type=int, default=50)
    q.set_defaults(func=list_cmd)
    for name, func, helptext in (("describe", describe_cmd, "the full job record"),
                                 ("logs", logs_cmd, "the job's log"),
                                 ("watch", watch_cmd, "live status and progress")):
        q = jsub.add_parser(name, help=helptext)
        q.add_argument("job", help="job name, ARN or id")
        if name == "logs":
            q.add_argument("-f", "--follow", action="store_true")
        if name == "describe":
            q.add_argument("--api", action="store_true",
                           help="as the job's service describes it (DescribeJob, GetJob, GetModelCustomizationJob)")
        if name == "watch":
            q.add_argument("--interval", type=float, default=1.0)
        q.set_defaults(func=func)
