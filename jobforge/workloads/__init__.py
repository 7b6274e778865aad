"""The real work of each job kind, one module (or package) per kind.

A workload module defines ``run(ctx: JobContext, spec: dict) -> None`` and is
imported only in the worker process; the kind that runs it names it in its
declaration (``jobforge.core.kinds.Workload``), so the server imports no workload.
"""
