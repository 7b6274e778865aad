"""What a role's stored policies are: the identity policies to evaluate, and whether any remain."""

from __future__ import annotations

import sqlalchemy as sa

from jobforge.core import policy_documents
from jobforge.core.aws_managed_policies import POLICIES as AWS_POLICIES
from jobforge.core.errors import ServiceError
from jobforge.core.policy_evaluation import Policy
from jobforge.core.store import managed_policies, policy_versions, role_policies, role_policy_attachments


def role_identity_policies(conn, account_id: str, role_id: str) -> list[Policy]:
    """A role's inline and attached managed policies (their default versions), ready to evaluate."""
    policies = [Policy(r.policy_name, "role", tuple(policy_documents.read_statements(r.document)))
                for r in conn.execute(sa.select(role_policies).where(role_policies.c.role_id == role_id)
                                      .order_by(role_policies.c.policy_name))]
    arns = conn.execute(sa.select(role_policy_attachments.c.policy_arn)
                        .where(role_policy_attachments.c.role_id == role_id)
                        .order_by(role_policy_attachments.c.policy_arn)).scalars().all()
    customer = conn.execute(
        sa.select(managed_policies.c.arn, managed_policies.c.policy_name, policy_versions.c.document)
        .join(policy_versions, sa.and_(policy_versions.c.policy_arn == managed_policies.c.arn,
                                       policy_versions.c.version_id == managed_policies.c.default_version))
        .where(managed_policies.c.account_id == account_id, managed_policies.c.arn.in_(arns))).all()
    by_arn = {r.arn: Policy(r.policy_name, "user-managed", tuple(policy_documents.read_statements(r.document)),
                            r.arn) for r in customer}
    for arn in arns:
        if arn in AWS_POLICIES:
            managed = AWS_POLICIES[arn]
            policies.append(Policy(managed.name, "aws-managed",
                                   tuple(policy_documents.read_statements(managed.document)), arn))
        elif arn in by_arn:
            policies.append(by_arn[arn])
    return policies


def role_policy_conflict(conn, role_id: str) -> ServiceError | None:
    """Why IAM refuses to delete a role that still has policies, or None."""
    if conn.execute(sa.select(role_policy_attachments.c.policy_arn)
                    .where(role_policy_attachments.c.role_id == role_id).limit(1)).first():
        return ServiceError("DeleteConflict", "Cannot delete entity, must detach all policies first.")
    if conn.execute(sa.select(role_policies.c.policy_name).where(role_policies.c.role_id == role_id).limit(1)).first():
        return ServiceError("DeleteConflict", "Cannot delete entity, must delete policies first.")
    return None
