"""Buckets' lifecycle rules, applied: current objects expire, incomplete multipart uploads are aborted.

A rule's document is S3's LifecycleRule as PutBucketLifecycleConfiguration
accepted it (its Date as epoch seconds). As on S3, an object expires ``Days``
after its creation rounded up to the next midnight UTC, or at ``Date`` (every
matching object, whenever written); an upload is aborted
``DaysAfterInitiation`` days after it began, rounded the same way. A sweep,
run periodically by the server, removes what is due. What it removes is gone
in the sweep after it is due, never before.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Iterator

from jobforge.core import bucket_settings
from jobforge.core.errors import ServiceError
from jobforge.core.objects import ObjectInfo, ObjectStore

log = logging.getLogger("jobforge.lifecycle")
DAY = 86400


def _filter(rule: dict) -> dict:
    """The rule's conditions as one And-shaped dict: Prefix, Tags, ObjectSizeGreaterThan, ObjectSizeLessThan."""
    if "Prefix" in rule:  # the older form: a prefix beside the rule's actions
        return {"Prefix": rule["Prefix"]}
    given = rule.get("Filter") or {}
    if "And" in given:
        return given["And"]
    if "Tag" in given:
        return {"Tags": [given["Tag"]]}
    return given


def prefix_of(rule: dict) -> str:
    return _filter(rule).get("Prefix") or ""


def applies_to(rule: dict, info: ObjectInfo) -> bool:
    """Whether the rule's filter selects this object."""
    conditions = _filter(rule)
    if not info.key.startswith(conditions.get("Prefix") or ""):
        return False
    if any(info.tags.get(tag["Key"]) != tag["Value"] for tag in conditions.get("Tags") or []):
        return False
    greater, less = conditions.get("ObjectSizeGreaterThan"), conditions.get("ObjectSizeLessThan")
    return (greater is None or info.size > greater) and (less is None or info.size < less)


def _created_before(days: int, now: float) -> float:
    """The creation times that are ``days`` days old, rounded up to midnight UTC, by ``now``: those before this."""
    return (now // DAY) * DAY - days * DAY


def expired(rule: dict, info: ObjectInfo, now: float) -> bool:
    expiration = rule.get("Expiration") or {}
    if expiration.get("Date") is not None:
        return now >= expiration["Date"]
    if expiration.get("Days") is not None:
        return info.last_modified < _created_before(expiration["Days"], now)
    return False


def _enabled(document: list[dict]) -> list[dict]:
    return [rule for rule in document if rule.get("Status") == "Enabled"]


def _objects(store: ObjectStore, bucket, prefix: str) -> Iterator[ObjectInfo]:
    resume = None
    while True:
        listing = store.list(bucket.account_id, bucket.name, prefix=prefix, resume=resume)
        yield from listing.contents
        if not listing.truncated:
            return
        resume = listing.resume


def _expire_objects(store: ObjectStore, bucket, rules: list[dict], now: float) -> int:
    removed = 0
    for rule in rules:
        if not rule.get("Expiration"):
            continue
        for info in _objects(store, bucket, prefix_of(rule)):
            if applies_to(rule, info) and expired(rule, info, now):
                try:  # only the version that expired: one written since the listing stays
                    store.delete(bucket.account_id, bucket.name, info.key, if_match=info.etag)
                    removed += 1
                except ServiceError:
                    pass  # rewritten or deleted meanwhile, or the bucket is gone
    return removed


def _abort_uploads(store: ObjectStore, bucket, rules: list[dict], now: float) -> int:
    aborted = 0
    for rule in rules:
        days = (rule.get("AbortIncompleteMultipartUpload") or {}).get("DaysAfterInitiation")
        if days is None:
            continue
        key_marker, upload_marker = "", ""
        while True:
            listing = store.list_uploads(bucket.account_id, bucket.name, prefix=prefix_of(rule),
                                         key_marker=key_marker, upload_id_marker=upload_marker)
            for upload in listing.uploads:
                if upload.initiated < _created_before(days, now):
                    try:
                        store.abort(bucket.account_id, bucket.name, upload.key, upload.upload_id)
                        aborted += 1
                    except ServiceError:
                        pass  # completed or aborted meanwhile
            if not listing.truncated or not listing.uploads:
                break
            key_marker, upload_marker = listing.uploads[-1].key, listing.uploads[-1].upload_id
    return aborted


def sweep(store: ObjectStore, now: float | None = None) -> tuple[int, int]:
    """Apply every bucket's enabled rules once: (objects expired, uploads aborted)."""
    now = time.time() if now is None else now
    expired_count = aborted = 0
    for bucket, document in bucket_settings.every(store.engine, bucket_settings.LIFECYCLE):
        rules = _enabled(document)
        try:
            expired_count += _expire_objects(store, bucket, rules, now)
            aborted += _abort_uploads(store, bucket, rules, now)
        except ServiceError:
            continue  # the bucket went while it was swept
    return expired_count, aborted


class LifecycleSweep:
    """Runs ``sweep`` at the server's start and then every ``interval`` seconds, in a thread of its own."""

    def __init__(self, store: ObjectStore, interval: float):
        self.store = store
        self.interval = interval
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="s3-lifecycle", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                expired_count, aborted = sweep(self.store)
                if expired_count or aborted:
                    log.info("Lifecycle: %d objects expired, %d incomplete uploads aborted", expired_count, aborted)
            except Exception:
                log.exception("Lifecycle sweep failed; the next one tries again")
            self._stopping.wait(self.interval)

    def stop(self, timeout: float = 1.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
