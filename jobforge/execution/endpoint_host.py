"""SageMaker endpoints' instances: model servers in confined, supervised processes, and the routing to them.

Deploying an endpoint's production variants (``deploy``) realises each instance type on this host or says
why it cannot (``placement``), fetches each model's data from the object store and unpacks it once per
variant, read-only, and starts ``InitialInstanceCount`` model servers per variant (``model_server``): each a
process of the ``ProcessHost``, confined as a Lambda environment is (per-account user, data dir hidden,
private /tmp, the memory of its instance type as its limit and held from jobs), pinned to its instance
type's vCPUs (and given its GPUs), with the model's ``Environment``, the ``SAGEMAKER_*`` variables its
framework container would set, and the credentials of the model's execution role. The supervisor restarts a
model server that dies, with its back-off; meanwhile requests go to the variant's other instances, or wait
for it (up to ``UNHEALTHY_WAIT``).

An invocation picks a variant by weight (or the one targeted), the instance of it with the fewest requests
in flight, and forwards the request to the instance's ``POST /invocations`` over a kept-alive connection to
its Unix socket. An update deploys the new variants beside the old ones, switches the routing once all are
ready, and stops the old instances once their requests in flight are answered: no request is dropped.
What a model server prints goes to CloudWatch Logs, group ``/aws/sagemaker/Endpoints/NAME``, one stream per
instance (``VARIANT/INSTANCE``), as on AWS.

The same deployments serve the inference recommender (``launch``): a private deployment of one model on
one instance type, with its instances' sockets and their processes' CPU and memory use (``usage``).

Of servers sharing a database, the one that created an endpoint serves it (its ``server_id``): an
invocation reaching another server is forwarded to it (``owner_url``), and an update or deletion requested
through another server is seen by the owner in the database within a second. When the owner's lease expires
(``core.server_leases``) the server that reclaims it deploys its endpoints anew (SystemUpdating until they
serve), as a restarted server does its own.
"""

from __future__ import annotations

import http.client
import logging
import os
import platform
import random
import shutil
import sys
import tarfile
import tempfile
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import urlsplit

import sqlalchemy as sa

from jobforge.core import accounts, hosting, instance_types
from jobforge.core.errors import ServiceError
from jobforge.core.server_leases import ServerLeases
from jobforge.execution.function_host import LogWriter
from jobforge.execution.model_server import STREAM_HEADER
from jobforge.execution.process_host import Hosted, HostedSpec, ProcessHost
from jobforge.execution.resources import detect_gpus
from jobforge.execution.unix_http import ConnectionPool
from jobforge.workloads.serving import frameworks

log = logging.getLogger("jobforge.endpoints")

PREFIX = "ep-"  # model servers' process and directory names
SOCKET = "model.sock"
STARTUP_SECONDS = 600.0  # ContainerStartupHealthCheckTimeoutInSeconds' role when the variant sets none
INVOCATION_SECONDS = 60.0  # SageMaker's limit on a model's answer
UNHEALTHY_WAIT = 10.0  # how long a request waits for a restarting instance when none of its variant is up
CREDENTIAL_SECONDS = 7 * 24 * 3600  # revoked earlier, with the instance
SCRATCH_MB = 1024
TAIL_LINES = 20
CHUNK = 65536
FOLLOW_SECONDS = 1.0  # how soon an update or deletion requested through another server starts here


class DeployFailed(Exception):
    """A deployment that cannot come up; the message is the endpoint's FailureReason."""


class NoInstance(Exception):
    """No instance of the chosen variant answers (ServiceUnavailable)."""

    def __init__(self, message: str, variant: str):
        super().__init__(message)
        self.variant = variant


class ModelFailed(Exception):
    """The model server answered with an error status (ModelError)."""

    def __init__(self, status: int, message: str, variant: str, stream: str, model_seconds: float = 0.0):
        super().__init__(message)
        self.status, self.message, self.variant, self.stream = status, message, variant, stream
        self.model_seconds = model_seconds


@dataclass
class Reply:
    variant: str
    content_type: str
    body: bytes | None = None  # a whole answer, or None for a stream
    chunks: Iterator[bytes] | None = None
    custom_attributes: str | None = None
    model_seconds: float = 0.0  # spent on the model server's side so far (a stream's grows as it is read)


@dataclass
class Instance:
    id: str
    variant: str
    instance_type: instance_types.InstanceType
    directory: Path
    stream: str  # its CloudWatch Logs stream
    cpus: list[int]
    gpus: list[int]
    hosted: Hosted | None = None
    pool: ConnectionPool | None = None
    healthy: bool = False
    in_flight: int = 0
    tail: deque = field(default_factory=lambda: deque(maxlen=TAIL_LINES))
    exits: int = 0

    @property
    def name(self) -> str:
        return self.directory.name

    @property
    def socket_path(self) -> Path:
        return self.directory / SOCKET

    @property
    def pid(self) -> int | None:
        process = self.hosted.process if self.hosted is not None else None
        return process.pid if process is not None and process.poll() is None else None


@dataclass
class Variant:
    name: str
    weight: float
    instances: list[Instance]
    model_dir: Path  # the unpacked model data, removed with the deployment


@dataclass
class Deployment:
    """The running instances of one set of production variants."""

    id: str
    account_id: str
    region: str
    log_group: str
    variants: list[Variant]
    in_flight: int = 0
    drained: threading.Condition = field(default_factory=threading.Condition)

    def variant(self, name: str) -> Variant | None:
        return next((variant for variant in self.variants if variant.name == name), None)

    @property
    def instances(self) -> list[Instance]:
        return [instance for variant in self.variants for instance in variant.instances]


@dataclass(frozen=True)
class Usage:
    """A model server's processes, all together: CPU seconds used so far and resident memory now."""

    cpu_seconds: float
    memory_bytes: int


class EndpointHost:
    def __init__(self, engine: sa.Engine, settings, processes: ProcessHost, object_store, keys: accounts.KeyRing,
                 leases: ServerLeases):
        self.engine = engine
        self.leases = leases
        self.server_id = leases.server_id
        self.settings = settings
        self.processes = processes
        self.object_store = object_store
        self.keys = keys
        self.models_root = settings.data_dir / "hosting-models"
        cores = sorted(os.sched_getaffinity(0))
        self.cores = cores[:settings.cpus] if settings.cpus else cores
        self.memory_mb = settings.memory_mb or os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        gpu_ids = [g.strip() for g in visible.split(",") if g.strip() and g.strip() != "-1"] if visible else \
            [str(i) for i in range(detect_gpus())]
        self.gpu_ids = gpu_ids[:settings.gpus] if settings.gpus is not None else gpu_ids
        self.architecture = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}.get(
            platform.machine().lower(), platform.machine())
        self._lock = threading.Lock()
        self._pins: Counter = Counter()  # core → instances pinned to it
        self._gpus_taken: set[str] = set()
        self._memory_held = 0
        self._serving: dict[str, Deployment] = {}  # endpoint id → the deployment its invocations reach
        self._names: dict[tuple[str, str, str], str] = {}  # (account, region, name) → id, of endpoints serving
        self._changing: set[str] = set()  # endpoints this server is updating or deleting
        self._closed = threading.Event()
        self._logs: LogWriter | None = None
        self._watcher: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        """Clear what this server's previous life's instances left, then bring its endpoints back (and those no
        server serves)."""
        self.processes.sweep(PREFIX)
        self.keys.revoke_server(None, PREFIX)  # issued before servers recorded themselves with credentials
        shutil.rmtree(self.models_root, ignore_errors=True)
        self._logs = LogWriter(self.engine)
        self._watcher = threading.Thread(target=self._watch, name="endpoint-instances", daemon=True)
        self._watcher.start()
        self.reclaim(self.server_id)
        self.reclaim(None)

    def reclaim(self, server_id: str | None) -> None:
        """Serve the endpoints of a server that is gone (None: those no server serves): each is deployed again
        here (SystemUpdating until it serves), and one it was deleting is deleted; its instances' credentials go."""
        if server_id is not None:
            self.keys.revoke_server(server_id, PREFIX)
        for endpoint in hosting.take_endpoints(self.engine, self.server_id, server_id):
            if endpoint.status == hosting.DELETING:
                self.delete(endpoint)
            elif endpoint.status != hosting.FAILED:  # an update it was making completes
                endpoint = hosting.update_endpoint(
                    self.engine, endpoint.id, deployment=endpoint.pending or endpoint.deployment, pending=None,
                    config_name=(endpoint.pending or endpoint.deployment)["EndpointConfigName"],
                    status=hosting.CREATING if endpoint.status == hosting.CREATING else hosting.SYSTEM_UPDATING)
                if endpoint is not None:
                    self._in_background(self._bring_up, endpoint, f"endpoint-{endpoint.name}")

    def owner_url(self, endpoint: hosting.Endpoint) -> str | None:
        """The URL of the other, live server that serves an endpoint; None when this one does or none does."""
        if endpoint.server_id in (None, self.server_id):
            return None
        return self.leases.url_of(endpoint.server_id)

    def stop(self, deadline: float) -> None:
        self._closed.set()
        with self._lock:
            deployments, self._serving, self._names = list(self._serving.values()), {}, {}
        for deployment in deployments:
            self._tear_down(deployment, drain=False)
        if self._logs is not None:
            self._logs.close(max(0.0, deadline - time.monotonic()))

    @staticmethod
    def _in_background(fn: Callable, *args) -> None:
        threading.Thread(target=fn, args=args[:-1], name=args[-1], daemon=True).start()

    # -- endpoints (the API's side) --------------------------------------------------------
    def create(self, endpoint: hosting.Endpoint) -> None:
        """Bring a new endpoint to InService, or Failed with the reason, in the background; this server serves it."""
        if hosting.take_endpoint(self.engine, endpoint.id, self.server_id):
            self._in_background(self._bring_up, endpoint, f"endpoint-{endpoint.name}")

    def update(self, endpoint: hosting.Endpoint) -> None:
        """Move an Updating endpoint to its pending deployment in the background: InService on it once it
        serves, or InService on the old one with the reason the new one failed."""
        if self._begin_change(endpoint):
            self._in_background(self._move, endpoint, f"endpoint-{endpoint.name}")

    def delete(self, endpoint: hosting.Endpoint) -> None:
        """Stop a Deleting endpoint's instances (once its requests in flight are answered), then forget it."""
        if self._begin_change(endpoint):
            self._in_background(self._remove, endpoint, f"endpoint-{endpoint.name}")

    def _begin_change(self, endpoint: hosting.Endpoint) -> bool:
        """Whether this server makes an update or deletion now: it serves the endpoint (else the server that
        does sees the change in the database) and is not making one already."""
        if endpoint.server_id != self.server_id:
            return False
        with self._lock:
            if endpoint.id in self._changing:
                return False
            self._changing.add(endpoint.id)
            return True

    def _end_change(self, endpoint_id: str) -> None:
        with self._lock:
            self._changing.discard(endpoint_id)

    def _follow_changes(self) -> None:
        """Make the updates and deletions of this server's endpoints that were requested through another."""
        for endpoint in hosting.changing_endpoints(self.engine, self.server_id):
            (self.update if endpoint.status == hosting.UPDATING else self.delete)(endpoint)

    def _bring_up(self, endpoint: hosting.Endpoint) -> None:
        try:
            deployment = self._deploy(endpoint.account_id, endpoint.region, endpoint.log_group, endpoint.deployment)
        except DeployFailed as err:
            hosting.update_endpoint(self.engine, endpoint.id, status=hosting.FAILED, failure_reason=str(err)[:1024])
            return
        with self._lock:
            self._serving[endpoint.id] = deployment
            self._names[(endpoint.account_id, endpoint.region, endpoint.name)] = endpoint.id
        if hosting.update_endpoint(self.engine, endpoint.id, status=hosting.IN_SERVICE, failure_reason=None) is None:
            self._forget(endpoint.id)  # deleted meanwhile

    def _move(self, endpoint: hosting.Endpoint) -> None:
        try:
            self._move_to_pending(endpoint)
        finally:
            self._end_change(endpoint.id)

    def _move_to_pending(self, endpoint: hosting.Endpoint) -> None:
        try:
            deployment = self._deploy(endpoint.account_id, endpoint.region, endpoint.log_group, endpoint.pending)
        except DeployFailed as err:
            hosting.update_endpoint(self.engine, endpoint.id, status=hosting.IN_SERVICE, pending=None,
                                    failure_reason=f"The update failed, the endpoint serves its previous "
                                                   f"configuration: {err}"[:1024])
            return
        with self._lock:
            old, self._serving[endpoint.id] = self._serving.get(endpoint.id), deployment
        updated = hosting.update_endpoint(self.engine, endpoint.id, status=hosting.IN_SERVICE, failure_reason=None,
                                          deployment=endpoint.pending, pending=None,
                                          config_name=endpoint.pending["EndpointConfigName"])
        if updated is None:
            self._forget(endpoint.id)
        if old is not None:
            self._tear_down(old, drain=True)

    def _remove(self, endpoint: hosting.Endpoint) -> None:
        try:
            self._forget(endpoint.id)
            hosting.delete_endpoint(self.engine, endpoint)
        finally:
            self._end_change(endpoint.id)

    def _forget(self, endpoint_id: str) -> None:
        with self._lock:
            deployment = self._serving.pop(endpoint_id, None)
            for key in [key for key, value in self._names.items() if value == endpoint_id]:
                del self._names[key]
        if deployment is not None:
            self._tear_down(deployment, drain=True)

    # -- invocations -----------------------------------------------------------------------
    def serving_named(self, account_id: str, region: str, name: str) -> Deployment | None:
        """The deployment serving the endpoint of that name (None when none serves), found without the store:
        it is looked up on every invocation."""
        with self._lock:
            endpoint_id = self._names.get((account_id, region, name))
            return self._serving.get(endpoint_id) if endpoint_id is not None else None

    def forward(self, deployment: Deployment, body: bytes, content_type: str | None, accept: str | None,
                target_variant: str | None = None, custom_attributes: str | None = None, stream: bool = False
                ) -> Reply:
        variant = self._variant(deployment, target_variant)
        instance = self._instance(deployment, variant)
        headers = {"Content-Type": content_type or "application/octet-stream", "Accept": accept or "*/*"}
        if custom_attributes:
            headers["X-Amzn-SageMaker-Custom-Attributes"] = custom_attributes
        if stream:
            headers[STREAM_HEADER] = "true"
        connection = instance.pool.take()
        released = False

        def release(reuse: bool) -> None:
            nonlocal released
            if released:
                return
            released = True
            (instance.pool.give_back if reuse else lambda c: c.close())(connection)
            with self._lock:
                instance.in_flight -= 1
            with deployment.drained:
                deployment.in_flight -= 1
                deployment.drained.notify_all()

        sent = time.perf_counter()
        try:
            connection.request("POST", "/invocations", body=body, headers=headers)
            response = connection.getresponse()
        except (OSError, http.client.HTTPException) as err:
            release(False)
            raise NoInstance(f"The model server of variant {variant.name} did not answer: {err}.",
                             variant.name) from None
        kind = response.getheader("Content-Type") or "application/octet-stream"
        attributes = response.getheader("X-Amzn-SageMaker-Custom-Attributes")
        if not 200 <= response.status < 300 or not stream:
            try:
                answer = response.read()
            except (OSError, http.client.HTTPException) as err:
                release(False)
                raise NoInstance(f"The model server of variant {variant.name} went away while answering: "
                                 f"{err}.", variant.name) from None
            model_seconds = time.perf_counter() - sent
            release(not response.will_close)
            if not 200 <= response.status < 300:
                raise ModelFailed(response.status, answer.decode("utf-8", "replace"), variant.name, instance.stream,
                                  model_seconds)
            return Reply(variant.name, kind, answer, custom_attributes=attributes, model_seconds=model_seconds)

        def chunks() -> Iterator[bytes]:
            finished = False
            try:
                while True:
                    started = time.perf_counter()
                    chunk = response.read1(CHUNK)
                    reply.model_seconds += time.perf_counter() - started
                    if not chunk:
                        break
                    yield chunk
                finished = True
            except (OSError, http.client.HTTPException) as err:
                raise ModelFailed(500, f"The model server's stream broke off: {err}", variant.name,
                                  instance.stream) from None
            finally:
                release(finished and not response.will_close)

        reply = Reply(variant.name, kind, chunks=chunks(), custom_attributes=attributes,
                      model_seconds=time.perf_counter() - sent)
        return reply

    def _variant(self, deployment: Deployment, target: str | None) -> Variant:
        if target is not None:
            found = deployment.variant(target)
            if found is None:
                raise ServiceError("ValidationError", f"The variant {target} is not one of the endpoint's: "
                                   f"{', '.join(v.name for v in deployment.variants)}.")
            return found
        weighted = [variant for variant in deployment.variants if variant.weight > 0]
        if not weighted:
            raise ServiceError("ValidationError", "Every variant of the endpoint has weight 0: name one with "
                               "TargetVariant.")
        return random.choices(weighted, [variant.weight for variant in weighted])[0]

    def _instance(self, deployment: Deployment, variant: Variant) -> Instance:
        """The healthy instance of the variant with the fewest requests in flight (one is waited for while all
        restart); counted in flight."""
        deadline = time.monotonic() + UNHEALTHY_WAIT
        while True:
            with self._lock:
                healthy = [instance for instance in variant.instances if instance.healthy]
                if healthy:
                    chosen = min(healthy, key=lambda instance: (instance.in_flight, random.random()))
                    chosen.in_flight += 1
                    with deployment.drained:
                        deployment.in_flight += 1
                    return chosen
            if time.monotonic() > deadline or self._closed.is_set():
                raise NoInstance(f"No instance of variant {variant.name} is up: its model server is restarting. "
                                 "See the endpoint's log for why it exited.", variant.name)
            time.sleep(0.02)

    # -- deployments --------------------------------------------------------------------------
    def _deploy(self, account_id: str, region: str, log_group: str, plan: dict) -> Deployment:
        """Start every instance of a deployment and wait for all to answer; DeployFailed with the reason."""
        deployment = Deployment(uuid.uuid4().hex[:12], account_id, region, log_group, [])
        try:
            for spec in plan["ProductionVariants"]:
                deployment.variants.append(self._start_variant(deployment, spec))
            for instance in deployment.instances:
                self._await_ready(instance, plan)
        except BaseException as err:
            self._tear_down(deployment, drain=False)
            if isinstance(err, DeployFailed):
                raise
            if isinstance(err, (OSError, ServiceError)):
                raise DeployFailed(f"{err}") from None
            log.exception("deploying for %s failed", log_group)
            raise DeployFailed(f"The deployment failed: {type(err).__name__}: {err}") from None
        return deployment

    def launch(self, account_id: str, region: str, model: dict, instance_type: str, count: int = 1,
               environment: dict | None = None, log_group: str = "/aws/sagemaker/InferenceRecommendationsJobs"
               ) -> Deployment:
        """A private deployment of one model (a CreateModel request's fields, as ``hosting.create_model`` stores
        them) on ``count`` instances of ``instance_type``, with extra environment variables; ``forward`` reaches
        it, ``usage`` measures its instances, ``close`` ends it. DeployFailed says why it cannot run here."""
        model = dict(model)
        if environment:
            container = dict(model["Container"])
            container["Environment"] = {**(container.get("Environment") or {}), **environment}
            model["Container"] = container
        variant = {"VariantName": "AllTraffic", "InstanceType": instance_type, "InitialInstanceCount": count,
                   "InitialVariantWeight": 1.0, "Model": model}
        return self._deploy(account_id, region, log_group, {"ProductionVariants": [variant]})

    def close(self, deployment: Deployment) -> None:
        self._tear_down(deployment, drain=True)

    def _start_variant(self, deployment: Deployment, spec: dict) -> Variant:
        instance_type = self.placement(spec["InstanceType"])
        model = spec["Model"]
        container = model["Container"]
        environment = dict(container.get("Environment") or {})
        try:
            framework = frameworks.image_framework(container.get("Image"))
        except frameworks.Unservable as err:
            raise DeployFailed(str(err)) from None
        model_dir, code_dir = self._fetch(deployment, spec["VariantName"], model)
        try:
            kind = frameworks.server_kind(model_dir, code_dir, framework, environment)
        except frameworks.Unservable as err:
            raise DeployFailed(f"Variant {spec['VariantName']}: {err}") from None
        variant = Variant(spec["VariantName"], float(spec.get("InitialVariantWeight", 1.0)), [], model_dir.parent)
        for _ in range(spec.get("InitialInstanceCount") or 1):
            instance = self._allocate(deployment, variant.name, instance_type)
            variant.instances.append(instance)
            self._start_instance(deployment, instance, model, model_dir, code_dir, kind, framework, environment)
        return variant

    def placement(self, name: str) -> instance_types.InstanceType:
        """The instance type if this host can realise it; DeployFailed saying why not."""
        found = instance_types.find(name)
        if found is None:
            raise DeployFailed(f"The instance type {name} is not in this server's instance catalog: its vCPUs, "
                               "memory and GPUs are unknown. Add it to the catalog override file "
                               f"({instance_types.OVERRIDE_VARIABLE}).")
        short = []
        if found.accelerator:
            short.append(f"{found.accelerators} {found.accelerator} accelerator(s), which this host does not have")
        if found.architecture != self.architecture:
            short.append(f"an {found.architecture} CPU (this host's is {self.architecture})")
        if found.vcpus > len(self.cores):
            short.append(f"{found.vcpus} vCPUs (this host has {len(self.cores)})")
        if found.memory_mb > self.memory_mb:
            short.append(f"{found.memory_mb} MiB of memory (this host has {self.memory_mb})")
        if found.gpus > len(self.gpu_ids):
            short.append(f"{found.gpus} {found.gpu or 'GPU'}(s) (this host has {len(self.gpu_ids)} GPUs)")
        if short:
            raise DeployFailed(f"This host cannot realise the instance type {name}: it needs {'; '.join(short)}.")
        return found

    def _allocate(self, deployment: Deployment, variant: str, instance_type: instance_types.InstanceType
                  ) -> Instance:
        """An instance's cores (those the fewest instances are pinned to), GPUs (its own) and memory (held)."""
        with self._lock:
            if self._memory_held + instance_type.memory_mb > self.memory_mb:
                raise DeployFailed(f"There is not enough memory left on this host for another {instance_type.name} "
                                   f"instance ({instance_type.memory_mb} MiB): other endpoints' instances hold "
                                   f"{self._memory_held} MiB of {self.memory_mb}.")
            free_gpus = [gpu for gpu in self.gpu_ids if gpu not in self._gpus_taken]
            if instance_type.gpus > len(free_gpus):
                raise DeployFailed(f"The instance type {instance_type.name} needs {instance_type.gpus} GPUs; "
                                   f"{len(free_gpus)} of this host's {len(self.gpu_ids)} are not taken by other "
                                   "instances.")
            cores = sorted(self.cores, key=lambda core: (self._pins[core], core))[:instance_type.vcpus]
            gpus = free_gpus[:instance_type.gpus]
            self._pins.update(cores)
            self._gpus_taken.update(gpus)
            self._memory_held += instance_type.memory_mb
        instance_id = uuid.uuid4().hex[:12]
        return Instance(instance_id, variant, instance_type, self.settings.jobs_dir / (PREFIX + instance_id),
                        f"{variant}/{instance_id}", cores, gpus)

    def _start_instance(self, deployment: Deployment, instance: Instance, model: dict, model_dir: Path,
                        code_dir: Path | None, kind: str, framework: str | None, environment: dict) -> None:
        threads = instance.instance_type.vcpus
        variables = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"), "LANG": "C.UTF-8", "TZ": ":UTC",
            "PYTHONUNBUFFERED": "1", "TMPDIR": "/tmp" if self.processes.isolation().host.namespaces
            else str(instance.directory / "tmp"),
            "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads),
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
            "CUDA_VISIBLE_DEVICES": ",".join(instance.gpus) if instance.gpus else "-1",
            "SAGEMAKER_REGION": deployment.region, "AWS_REGION": deployment.region,
            "AWS_DEFAULT_REGION": deployment.region, "SAGEMAKER_PROGRAM": frameworks.program(environment),
            "SAGEMAKER_SUBMIT_DIRECTORY": str(code_dir or model_dir / "code"),
            "SAGEMAKER_MODEL_SERVER_TIMEOUT": str(int(INVOCATION_SECONDS)),
            "AWS_ENDPOINT_URL": self.settings.advertised_url,
            "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }
        role = model.get("ExecutionRoleArn")
        if role:
            credential = accounts.issue_temporary_credentials(
                self.engine, deployment.account_id, f"arn:aws:sts::{deployment.account_id}:assumed-role/"
                f"{role.rsplit('/', 1)[-1]}/SageMaker", CREDENTIAL_SECONDS, instance.name, self.server_id)
            variables.update(AWS_ACCESS_KEY_ID=credential.access_key_id, AWS_SECRET_ACCESS_KEY=credential.secret_key,
                             AWS_SESSION_TOKEN=credential.session_token)
        variables.update({key: value for key, value in environment.items() if key != "SAGEMAKER_SUBMIT_DIRECTORY"})
        settings = {"model_dir": str(model_dir), "code_dir": str(code_dir) if code_dir else None, "kind": kind,
                    "framework": framework, "socket": str(instance.socket_path), "cpus": instance.cpus,
                    "threads": threads}
        readable = tuple(str(path) for path in (model_dir.parent,))
        spec = HostedSpec(name=instance.name, account_id=deployment.account_id, python=sys.executable,
                          module="jobforge.execution.model_server", settings=settings, env=variables,
                          memory_mb=instance.instance_type.memory_mb,
                          on_output=lambda line: self._output(deployment, instance, line), scratch_mb=SCRATCH_MB,
                          readable=readable, private_network=bool(model.get("EnableNetworkIsolation")),
                          restart=True, address_space_limit=not instance.gpus)
        instance.pool = ConnectionPool(instance.socket_path, INVOCATION_SECONDS)
        instance.hosted = self.processes.start(spec)

    def _await_ready(self, instance: Instance, plan: dict) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self._closed.is_set():
                raise DeployFailed("The server is stopping.")
            if instance.exits:
                lines = " | ".join(list(instance.tail)[-5:]) or "it printed nothing"
                raise DeployFailed(f"The model server of variant {instance.variant} ({instance.instance_type.name}) "
                                   f"exited before it answered GET /ping: {lines}"[:1000])
            if self._ping(instance):
                with self._lock:
                    instance.healthy = True
                return
            time.sleep(0.05)
        raise DeployFailed(f"The model server of variant {instance.variant} did not answer GET /ping within "
                           f"{STARTUP_SECONDS:.0f} seconds.")

    def _ping(self, instance: Instance) -> bool:
        if not instance.socket_path.exists() or instance.pool is None:
            return False
        connection = instance.pool.take()
        try:
            connection.request("GET", "/ping")
            response = connection.getresponse()
            response.read()
        except (OSError, http.client.HTTPException):
            connection.close()
            return False
        connection.close()
        return response.status == 200

    def _watch(self) -> None:
        """Bring instances that restarted back into the routing once they answer again; every FOLLOW_SECONDS,
        make the changes to this server's endpoints requested through other servers."""
        followed = time.monotonic()
        while not self._closed.wait(0.1):
            if time.monotonic() - followed > FOLLOW_SECONDS:
                followed = time.monotonic()
                try:
                    self._follow_changes()
                except sa.exc.DBAPIError as err:
                    log.warning("Could not read the changes to this server's endpoints: %s", err)
            with self._lock:
                down = [instance for deployment in self._serving.values() for instance in deployment.instances
                        if not instance.healthy and instance.hosted is not None]
            for instance in down:
                if self._ping(instance):
                    with self._lock:
                        instance.healthy = True

    def _output(self, deployment: Deployment, instance: Instance, line: bytes | None) -> None:
        if line is None:  # the process ended: the supervisor starts another
            with self._lock:
                instance.healthy = False
                instance.exits += 1
            if instance.pool is not None:
                instance.pool.close()
            return
        text = line.decode("utf-8", "replace")
        instance.tail.append(text)
        if self._logs is not None:
            self._logs.put(deployment.account_id, deployment.region, deployment.log_group, instance.stream,
                           [(time.time(), text)])

    def _tear_down(self, deployment: Deployment, drain: bool) -> None:
        """Stop a deployment's instances (once its requests in flight are answered, when draining)."""
        if drain:
            with deployment.drained:
                deployment.drained.wait_for(lambda: deployment.in_flight == 0, timeout=INVOCATION_SECONDS)
        for instance in deployment.instances:
            with self._lock:
                instance.healthy = False
            if instance.hosted is not None:
                self.processes.stop(instance.hosted)
                instance.hosted = None
            if instance.pool is not None:
                instance.pool.close()
            self.keys.revoke_job(instance.name)
            with self._lock:
                self._pins.subtract(instance.cpus)
                self._gpus_taken.difference_update(instance.gpus)
                self._memory_held -= instance.instance_type.memory_mb
        for variant in deployment.variants:
            shutil.rmtree(variant.model_dir, ignore_errors=True)
        shutil.rmtree(self.models_root / deployment.id, ignore_errors=True)

    # -- model data -----------------------------------------------------------------------------
    def _fetch(self, deployment: Deployment, variant: str, model: dict) -> tuple[Path, Path | None]:
        """The model's data unpacked under the data dir, read-only to its instances: (model dir, code dir)."""
        root = self.models_root / deployment.id / variant
        model_dir = root / "model"
        model_dir.mkdir(parents=True, mode=0o755)
        for folder in (self.models_root, self.models_root / deployment.id):
            folder.chmod(0o711)  # traversable only: the instances reach their own model's folder
        container = model["Container"]
        source = container.get("ModelDataSource", {}).get("S3DataSource")
        if container.get("ModelDataUrl"):
            self._unpack(deployment.account_id, container["ModelDataUrl"], model_dir)
        elif source is not None:
            if source.get("CompressionType") == "Gzip":
                self._unpack(deployment.account_id, source["S3Uri"], model_dir)
            else:
                self._copy_prefix(deployment.account_id, source, model_dir)
        code_dir = None
        submitted = (container.get("Environment") or {}).get("SAGEMAKER_SUBMIT_DIRECTORY", "")
        if submitted.startswith("s3://"):
            code_dir = root / "code"
            code_dir.mkdir(mode=0o755)
            self._unpack(deployment.account_id, submitted, code_dir)
        elif (model_dir / "code").is_dir():
            code_dir = model_dir / "code"
        users = self.processes.isolation().users
        _readable(root, users.for_account(deployment.account_id).gid if users else None)
        return model_dir, code_dir

    def _download(self, account_id: str, uri: str, target) -> None:
        parts = urlsplit(uri)
        if parts.scheme != "s3" or not parts.netloc:
            raise DeployFailed(f"The model data {uri} is not an s3:// URI this server can read.")
        try:
            with self.object_store.open(account_id, parts.netloc, parts.path.lstrip("/")) as held:
                for chunk in held.read(0, held.info.size):
                    target.write(chunk)
        except ServiceError as err:
            raise DeployFailed(f"Could not find model data at {uri}: {err.message}") from None

    def _unpack(self, account_id: str, uri: str, target: Path) -> None:
        with tempfile.TemporaryFile(dir=self.models_root) as staged:
            self._download(account_id, uri, staged)
            staged.seek(0)
            try:
                with tarfile.open(fileobj=staged, mode="r:*") as archive:
                    archive.extractall(target, filter="data")  # no member may land outside target
            except (tarfile.TarError, OSError, EOFError) as err:
                raise DeployFailed(f"The model data at {uri} is not a tar.gz archive jobforge can unpack: {err}.") \
                    from None

    def _copy_prefix(self, account_id: str, source: dict, target: Path) -> None:
        uri = source["S3Uri"]
        parts = urlsplit(uri)
        if source.get("S3DataType") == "S3Object":
            with open(target / Path(parts.path).name, "wb") as handle:
                self._download(account_id, uri, handle)
            return
        prefix = parts.path.lstrip("/")
        listing = self.object_store.list(account_id, parts.netloc, prefix=prefix)
        for info in listing.contents:
            relative = info.key[len(prefix):].lstrip("/")
            if not relative or ".." in Path(relative).parts:
                continue
            path = target / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb") as handle:
                self._download(account_id, f"s3://{parts.netloc}/{info.key}", handle)

    # -- for the inference recommender ------------------------------------------------------------
    def serving(self, endpoint_id: str) -> Deployment | None:
        """The deployment an endpoint's invocations reach now."""
        with self._lock:
            return self._serving.get(endpoint_id)

    @staticmethod
    def usage(instance: Instance) -> Usage | None:
        """What an instance's processes use (None while it is not running): from its cgroup where it has one,
        else summed over its process tree."""
        cgroup = instance.hosted.cgroup if instance.hosted is not None else None
        if cgroup is not None:
            try:
                stat = dict(line.split() for line in (cgroup / "cpu.stat").read_text().splitlines())
                memory = (cgroup / "memory.current").read_text()
                return Usage(int(stat["usage_usec"]) / 1e6, int(memory))
            except (OSError, KeyError, ValueError):
                pass
        pid = instance.pid
        return _tree_usage(pid) if pid is not None else None


def _tree_usage(root: int) -> Usage:
    children: dict[int, list[int]] = {}
    stats: dict[int, tuple[float, int]] = {}
    ticks, page = os.sysconf("SC_CLK_TCK"), os.sysconf("SC_PAGE_SIZE")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()
        pid = int(entry)
        children.setdefault(int(fields[1]), []).append(pid)
        stats[pid] = ((int(fields[11]) + int(fields[12])) / ticks, int(fields[21]) * page)
    cpu, memory, todo = 0.0, 0, [root]
    while todo:
        pid = todo.pop()
        used, resident = stats.get(pid, (0.0, 0))
        cpu, memory = cpu + used, memory + resident
        todo.extend(children.get(pid, ()))
    return Usage(cpu, memory)


def _readable(root: Path, gid: int | None) -> None:
    """Unpacked model data readable, not writable, by its instances: through the group of the account's user
    where accounts have users of their own (no other account's user reads it), else by all."""
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        if gid is not None:
            os.chown(path, -1, gid)
        path.chmod((0o750 if path.is_dir() else 0o640) if gid is not None else (0o755 if path.is_dir() else 0o644))
