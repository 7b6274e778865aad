"""STS: who am I (the Braket and SageMaker SDKs ask for the account id)."""

from jobforge.api.base import RequestContext, handler


@handler("sts", "GetCallerIdentity")
def get_caller_identity(ctx: RequestContext, req: dict) -> dict:
    user_id = ctx.access_key_id if ctx.principal_arn.endswith(":root") else \
        f"{ctx.access_key_id}:{ctx.principal_arn.rsplit('/', 1)[-1]}"
    return {"UserId": user_id, "Account": ctx.account_id, "Arn": ctx.principal_arn}
