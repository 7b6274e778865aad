"""Reserved concurrency: the most environments a function runs at once, set aside from the account's."""

from __future__ import annotations

from jobforge.api.base import RequestContext, handler
from jobforge.api.lambda_functions.common import function_of, invalid
from jobforge.core import functions as records
from jobforge.execution.function_host import ACCOUNT_CONCURRENCY

MIN_UNRESERVED = 100


@handler("lambda", "PutFunctionConcurrency")
def put_function_concurrency(ctx: RequestContext, req: dict) -> dict:
    function = function_of(ctx, req["FunctionName"])
    wanted = req["ReservedConcurrentExecutions"]
    others = records.reserved_in_account(ctx.engine, ctx.account_id, ctx.region, besides=function.id)
    if ACCOUNT_CONCURRENCY - others - wanted < MIN_UNRESERVED:
        raise invalid("Specified ReservedConcurrentExecutions for function decreases account's "
                      f"UnreservedConcurrentExecution below its minimum value of [{MIN_UNRESERVED}].")
    records.update(ctx.engine, function, new_revision=False, reserved_concurrency=wanted)
    return {"ReservedConcurrentExecutions": wanted}


@handler("lambda", "GetFunctionConcurrency")
def get_function_concurrency(ctx: RequestContext, req: dict) -> dict:
    function = function_of(ctx, req["FunctionName"])
    if function.reserved_concurrency is None:
        return {}
    return {"ReservedConcurrentExecutions": function.reserved_concurrency}


@handler("lambda", "DeleteFunctionConcurrency")
def delete_function_concurrency(ctx: RequestContext, req: dict) -> dict:
    function = function_of(ctx, req["FunctionName"])
    records.update(ctx.engine, function, new_revision=False, reserved_concurrency=None)
    return {}
