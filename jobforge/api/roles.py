"""The check every job creation makes: the RoleArn names a role of the caller's account."""

from jobforge.api.base import RequestContext
from jobforge.core.accounts import find_role
from jobforge.core.errors import ServiceError


def require_role(ctx: RequestContext, role_arn: str, error_code: str, status: int | None = None) -> None:
    account = role_arn.split(":")[4] if role_arn.count(":") >= 5 else ""
    if account != ctx.account_id or find_role(ctx.engine, ctx.account_id, role_arn) is None:
        raise ServiceError(error_code, f"Role {role_arn} does not exist in account {ctx.account_id} "
                           "or cannot be assumed by this service.", status)
