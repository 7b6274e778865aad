"""Request members that ask S3 for a protection jobforge does not give: refused, never ignored.

A client that asks for encryption under its own or a KMS key, for an object
lock, or for an ACL that shares an object, and gets a 200, believes its data
is protected (or shared) when it is not. Each rule answers what S3 itself
answers where that feature is missing, so the client's handling of S3 applies:

- ``NotImplemented`` (501) is S3's answer to "a header you provided implies
  functionality that is not implemented"; SDKs do not retry a 501.
- A bucket created without Object Lock answers every lock header with
  ``InvalidRequest`` "Bucket is missing Object Lock Configuration", and no
  jobforge bucket has Object Lock.
- Every jobforge bucket behaves as S3's default Object Ownership,
  BucketOwnerEnforced: ACLs are disabled, so a canned ACL that leaves the
  owner alone with access is accepted and any other ACL or grant is refused.
- No object is ever stored under a customer-provided key, so such a key on a
  read is ``InvalidRequest`` "The encryption parameters are not applicable to
  this object", as S3 answers for an object stored without one.
- AES256 (SSE-S3) is S3's default for every object and is accepted; jobforge
  keeps objects as sent and does not claim it in responses.
- ExpectedBucketOwner is honoured: a bucket is only ever used by its owner,
  so any other expected owner is the mismatch S3 answers with AccessDenied.
"""

from __future__ import annotations

from typing import Callable

from jobforge.core import service_models
from jobforge.core.errors import ServiceError

OWNER_ONLY_ACLS = {"private", "bucket-owner-full-control"}
KMS_ENCRYPTION = {"aws:kms", "aws:kms:dsse"}
OBJECT_WRITES = {"PutObject", "CopyObject", "CreateMultipartUpload"}  # where a customer key would encrypt


def _header(operation: str, member: str) -> str:
    return service_models.operation("s3", operation).input_shape.members[member].serialization["name"]


def _not_implemented(operation: str, member: str, what: str) -> ServiceError:
    return ServiceError("NotImplemented", f"A header you provided implies functionality that is not implemented: "
                        f"{what}", 501, Header=_header(operation, member))


def _encryption(operation, member, value, account_id):
    if value == "AES256":
        return None
    if value in KMS_ENCRYPTION:
        return _kms(operation, member, value, account_id)
    return ServiceError("InvalidArgument", "The encryption method specified is not supported", 400,
                        ArgumentName=_header(operation, member), ArgumentValue=value)


def _kms(operation, member, value, account_id):
    return _not_implemented(operation, member, "jobforge has no KMS to encrypt objects with")


def _bucket_key(operation, member, value, account_id):
    return None if value is False else _kms(operation, member, value, account_id)


def _customer_key(operation, member, value, account_id):
    if operation in OBJECT_WRITES:
        return _not_implemented(operation, member, "jobforge does not encrypt objects with customer-provided keys")
    return _not_applicable(operation, member, value, account_id)


def _not_applicable(operation, member, value, account_id):
    return ServiceError("InvalidRequest", "The encryption parameters are not applicable to this object.", 400)


def _object_lock(operation, member, value, account_id):
    return ServiceError("InvalidRequest", "Bucket is missing Object Lock Configuration", 400)


def _lock_enabled_bucket(operation, member, value, account_id):
    return None if value is False else _not_implemented(operation, member, "jobforge buckets have no Object Lock")


def _acl(operation, member, value, account_id):
    return None if value in OWNER_ONLY_ACLS else _grant(operation, member, value, account_id)


def _grant(operation, member, value, account_id):
    if operation == "CreateBucket":
        return ServiceError("InvalidBucketAclWithObjectOwnership", "Bucket cannot have ACLs set with "
                            "ObjectOwnership's BucketOwnerEnforced setting", 400)
    return ServiceError("AccessControlListNotSupported", "The bucket does not allow ACLs", 400)


def _expected_owner(operation, member, value, account_id):
    return None if value == account_id else ServiceError("AccessDenied", "Access Denied", 403)


def _append(operation, member, value, account_id):
    return _not_implemented(operation, member, "jobforge does not append to objects")


Rule = Callable[[str, str, object, str], "ServiceError | None"]
# Input member → its rule (operation, member, value, caller's account) → the error to answer, or None.
RULES: dict[str, Rule] = {
    "ServerSideEncryption": _encryption,
    "SSEKMSKeyId": _kms,
    "SSEKMSEncryptionContext": _kms,
    "BucketKeyEnabled": _bucket_key,
    "SSECustomerAlgorithm": _customer_key,
    "SSECustomerKey": _customer_key,
    "SSECustomerKeyMD5": _customer_key,
    "CopySourceSSECustomerAlgorithm": _not_applicable,
    "CopySourceSSECustomerKey": _not_applicable,
    "CopySourceSSECustomerKeyMD5": _not_applicable,
    "ObjectLockMode": _object_lock,
    "ObjectLockRetainUntilDate": _object_lock,
    "ObjectLockLegalHoldStatus": _object_lock,
    "ObjectLockEventHold": _object_lock,
    "ObjectLockEventHoldDurationDays": _object_lock,
    "ObjectLockEventHoldDurationYears": _object_lock,
    "ObjectLockEnabledForBucket": _lock_enabled_bucket,
    "ACL": _acl,
    "GrantFullControl": _grant,
    "GrantRead": _grant,
    "GrantReadACP": _grant,
    "GrantWrite": _grant,
    "GrantWriteACP": _grant,
    "ExpectedBucketOwner": _expected_owner,
    "ExpectedSourceBucketOwner": _expected_owner,
    "WriteOffsetBytes": _append,
}


def check_protections(operation: str, req: dict, account_id: str) -> None:
    """Raise the error of the first member of the request that asks for a protection jobforge does not give."""
    for member, rule in RULES.items():
        if req.get(member) is not None:
            refusal = rule(operation, member, req[member], account_id)
            if refusal is not None:
                raise refusal
