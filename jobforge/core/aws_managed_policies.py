"""The AWS-managed policies that AWS's samples attach, so that their set-up runs unchanged.

Their documents are jobforge's summary of what each grants (mostly the service's wildcard), not AWS's
text, which is longer and changes over time.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass

CREATED_AT = 1420070400.0  # a fixed date, so every listing shows the same one


@dataclass(frozen=True)
class AwsManagedPolicy:
    name: str
    path: str
    description: str
    document: str

    @property
    def arn(self) -> str:
        return f"arn:aws:iam::aws:policy{self.path}{self.name}"

    @property
    def policy_id(self) -> str:
        """Stable, and jobforge's own (AWS's ids are not reproduced)."""
        digest = base64.b32encode(hashlib.sha256(self.arn.encode()).digest()).decode()
        return "ANPA" + digest[:17]


def _document(*statements: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)}, indent=4)


def _allow(actions, resources="*", **condition) -> dict:
    statement = {"Effect": "Allow", "Action": actions, "Resource": resources}
    if condition:
        statement["Condition"] = condition
    return statement


def _pass_role_to(service: str) -> dict:
    return _allow("iam:PassRole", "arn:aws:iam::*:role/*",
                  StringEquals={"iam:PassedToService": f"{service}.amazonaws.com"})


POLICIES = {p.arn: p for p in (
    AwsManagedPolicy("AdministratorAccess", "/", "Provides full access to AWS services and resources.",
                     _document(_allow("*"))),
    AwsManagedPolicy("ReadOnlyAccess", "/", "Provides read-only access to AWS services and resources.",
                     _document(_allow(["*:Describe*", "*:Get*", "*:List*"]))),
    AwsManagedPolicy("AmazonS3FullAccess", "/",
                     "Provides full access to all buckets via the AWS Management Console.",
                     _document(_allow(["s3:*", "s3-object-lambda:*"]))),
    AwsManagedPolicy("AmazonS3ReadOnlyAccess", "/",
                     "Provides read only access to all buckets via the AWS Management Console.",
                     _document(_allow(["s3:Get*", "s3:List*", "s3:Describe*", "s3-object-lambda:Get*",
                                       "s3-object-lambda:List*"]))),
    AwsManagedPolicy("AmazonSageMakerFullAccess", "/",
                     "Provides full access to Amazon SageMaker via the AWS Management Console and SDK.",
                     _document(_allow(["sagemaker:*", "application-autoscaling:*", "cloudwatch:*", "logs:*",
                                       "ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:Describe*",
                                       "ecr:GetAuthorizationToken", "ecr:GetDownloadUrlForLayer",
                                       "ec2:CreateNetworkInterface", "ec2:CreateNetworkInterfacePermission",
                                       "ec2:DeleteNetworkInterface", "ec2:DeleteNetworkInterfacePermission",
                                       "ec2:Describe*", "iam:ListRoles", "kms:DescribeKey", "kms:ListAliases",
                                       "sts:GetCallerIdentity"]),
                               _allow("s3:*", ["arn:aws:s3:::*SageMaker*", "arn:aws:s3:::*Sagemaker*",
                                               "arn:aws:s3:::*sagemaker*"]),
                               _pass_role_to("sagemaker"))),
    AwsManagedPolicy("AmazonBedrockFullAccess", "/", "Provides full access to Amazon Bedrock.",
                     _document(_allow(["bedrock:*", "logs:*"]), _pass_role_to("bedrock"))),
    AwsManagedPolicy("AmazonBraketFullAccess", "/", "Provides full access to Amazon Braket.",
                     _document(_allow("braket:*"),
                               _allow("s3:*", ["arn:aws:s3:::amazon-braket-*", "arn:aws:s3:::braket-*"]),
                               _allow("logs:*", "arn:aws:logs:*:*:log-group:/aws/braket*"),
                               _pass_role_to("braket"))),
    AwsManagedPolicy("CloudWatchLogsFullAccess", "/", "Provides full access to CloudWatch Logs.",
                     _document(_allow("logs:*"))),
)}
