"""STS: who am I (the Braket and SageMaker SDKs ask for the account id)."""

from jobforge.api.base import RequestContext, handler
from jobforge.core.accounts import ROLE_BY_NAME
from jobforge.core.store import reading


@handler("sts", "GetCallerIdentity")
def get_caller_identity(ctx: RequestContext, req: dict) -> dict:
    return {"UserId": _user_id(ctx), "Account": ctx.account_id, "Arn": ctx.principal_arn}


def _user_id(ctx: RequestContext) -> str:
    """As AWS reports it: the account id for its root, ``RoleId:session`` for an assumed role."""
    if ctx.principal_arn.endswith(":root"):
        return ctx.account_id
    role_name, _, session = ctx.principal_arn.partition(":assumed-role/")[2].partition("/")
    with reading(ctx.engine) as conn:
        role = conn.execute(ROLE_BY_NAME, {"account": ctx.account_id, "name": role_name}).first()
    if role is None:  # the role was deleted while the job runs: AWS still names the session
        return f"{ctx.access_key_id}:{session}"
    return f"{role.role_id}:{session}"
