"""The Ray executor: each job attempt is a detached, named Ray actor on a Ray cluster.

``jobforge serve --executor ray --ray-address ADDR`` connects the server to
the cluster as a Ray driver (namespace ``jobforge``). Each attempt becomes a
``jobforge.execution.ray_attempt.JobAttempt`` actor that asks for the job's
CPUs, GPUs, memory and custom resources, so Ray places it on a node that has
them; there it starts and confines the job's worker. The actor is detached
and named after the job and attempt (``jobforge-<job id>-<attempt>``), so it
outlives the server: a handle is ``ray:<actor name>``, and a restarted server
(or the server that takes over scheduling) finds the actor by name and adopts
it, while its worker goes on reporting to the advertised URL.

Admission reads the cluster: ``shortfall`` compares a request with every live
node's total resources (a job that no node can ever hold fails at once), and
``can_start`` with their free resources, less what was submitted since Ray
last reported them. What the server's own long-lived processes hold is on the
server's host, not on the cluster, so it is not counted here.

An attempt whose actor died with its node is reported as ``AttemptLost``: the
scheduler resumes the job from its checkpoints (in the object store) on
another node where its workload can, else fails it saying so.
"""

from __future__ import annotations

import logging
import signal
import time
from collections import OrderedDict
from dataclasses import dataclass

from jobforge.core import kinds
from jobforge.execution.executor import AttemptLost
from jobforge.execution.resources import Capacity

try:
    import ray
    import ray._private.state as ray_state
    from ray._raylet import AuthenticationMode, get_authentication_mode
    from ray.exceptions import GetTimeoutError, RayActorError
except ImportError as err:  # the optional extra
    raise ImportError(f"the ray executor needs Ray: pip install 'jobforge[ray]' ({err})") from None

from jobforge.execution.ray_attempt import JobAttempt

log = logging.getLogger("jobforge.ray")
NAMESPACE = "jobforge"
ACTOR_PREFIX = "jobforge-"
VIEW_SECONDS = 0.5  # how long a reading of the nodes' free resources is used
FORCE_KILL_SECONDS = 5.0  # a forced stop the actor did not carry out this long ago ends the actor itself
CALL_SECONDS = 10.0  # the longest a call to a running actor is waited for
# A node lost this recently may come back (restarted, replaced): a job that only it could hold waits for it.
NODE_RETURN_SECONDS = 300.0
ENDED_LOGS_KEPT = 256
_NOT_CUSTOM = ("CPU", "GPU", "memory", "object_store_memory")


@dataclass
class _Attempt:
    job_id: str
    actor: object  # ray.actor.ActorHandle
    ended: object  # the ObjectRef of the actor's wait()
    placed: object | None  # the ObjectRef of its where(), until it is read
    request: dict | None  # the job's resources, held on its node until the actor ends
    counted_on: str | None = None  # the node whose free resources it was counted against at submission
    node: dict | None = None  # where() once read
    force_sent: float | None = None


def node_capacity(resources: dict) -> Capacity:
    """A node's resources as Ray reports them (memory in bytes), as a Capacity."""
    custom = {name: amount for name, amount in resources.items()
              if name not in _NOT_CUSTOM and not name.startswith(("node:", "accelerator_type:"))}
    return Capacity(int(resources.get("CPU", 0)), int(resources.get("memory", 0) // 2**20),
                    int(resources.get("GPU", 0)), custom)


def actor_options(request: dict) -> dict:
    """Ray's resource options for one instance of a job's request."""
    options = {"num_cpus": request.get("cpus", 1), "num_gpus": request.get("gpus", 0)}
    if request.get("memory_mb"):
        options["memory"] = request["memory_mb"] * 2**20
    if request.get("resources"):
        options["resources"] = dict(request["resources"])
    return options


class RayExecutor:
    def __init__(self, settings):
        self.settings = settings
        self._attempts: dict[str, _Attempt] = {}  # handle → attempt
        self._ended_logs: OrderedDict[str, str] = OrderedDict()  # job id → the end of its last worker's output
        self._base: dict = {}
        self._free: dict[str, Capacity] = {}  # node id → its free resources, as last read (and counted since)
        self._free_read = 0.0
        self._warned_nodes: set[str] = set()
        self._seen: dict[str, tuple[float, Capacity]] = {}  # node id → when it was last seen alive, its size
        self._remote = None
        self._swept = False

    # -- lifecycle ---------------------------------------------------------------
    def start(self, environment: dict) -> None:
        handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
        ray.init(address=self.settings.ray_address, namespace=NAMESPACE, log_to_driver=False,
                 logging_level=logging.WARNING)
        for sig, handler in handlers.items():  # Ray's would exit at once: the server's stop gracefully
            signal.signal(sig, handler)
        self._base = environment
        self._remote = ray.remote(JobAttempt)
        if get_authentication_mode() != AuthenticationMode.TOKEN:
            log.warning("The Ray cluster does not use token authentication: job code can reach the cluster's "
                        "ports and run any code on any node as the user Ray runs as. Start the cluster with "
                        "RAY_AUTH_MODE=token (a token from 'ray get-auth-token --generate') to keep jobs out.")
        nodes = [node_capacity(n) for n in ray_state.total_resources_per_node().values()]
        log.info("Ray cluster at %s: %d nodes, %s CPUs, %s GPUs", self.settings.ray_address, len(nodes),
                 sum(n.cpus for n in nodes), sum(n.gpus for n in nodes))

    def shutdown(self) -> None:
        """The attempts go on running on the cluster: the next server to schedule adopts them."""
        self._attempts.clear()
        if ray.is_initialized():
            ray.shutdown()

    def _sweep(self) -> None:
        """End the actors of attempts no job is running any more: their server was down when they ended, or when
        their job ended. Done at the first poll, once the attempts still running have been adopted."""
        for name in ray.util.list_named_actors():
            if name.startswith(ACTOR_PREFIX) and f"ray:{name}" not in self._attempts:
                try:
                    ray.kill(ray.get_actor(name))
                except ValueError:  # ended meanwhile
                    pass
        self._swept = True

    # -- resources ---------------------------------------------------------------
    def capacity(self) -> Capacity:
        """The most one job instance can get on any node (each resource's largest amount among the nodes)."""
        nodes = self._totals()
        custom: dict[str, float] = {}
        for node in nodes:
            for name, amount in node.resources.items():
                custom[name] = max(custom.get(name, 0), amount)
        return Capacity(max((n.cpus for n in nodes), default=0), max((n.memory_mb for n in nodes), default=0),
                        max((n.gpus for n in nodes), default=0), custom)

    def shortfall(self, request: dict) -> str | None:
        self._totals()
        if request.get("instances", 1) > 1:
            return self.capacity().shortfall(request)
        recent = [node for seen, node in self._seen.values() if time.monotonic() - seen < NODE_RETURN_SECONDS]
        if not recent or any(node.shortfall(request) is None for node in recent):
            return None  # a node (maybe one just lost, or none yet: the cluster is starting) can hold it: it waits
        return self.capacity().shortfall(request) or (
            "The job needs more than any one node of the Ray cluster can give: no node has "
            f"{_describe(request)} at once.")

    def can_start(self, request: dict, held: Capacity) -> bool:
        return self._fitting(request) is not None

    def _fitting(self, request: dict) -> str | None:
        """A node with the request's resources free (its id), by the last reading and what was counted since."""
        if time.monotonic() - self._free_read > VIEW_SECONDS:
            self._free = {node_id: node_capacity(n) for node_id, n in ray_state.available_resources_per_node().items()}
            self._free_read = time.monotonic()
        return next((node_id for node_id, node in self._free.items() if node.fits(request, Capacity(0, 0, 0))), None)

    def _count(self, node_id: str | None, request: dict, sign: int) -> None:
        """Take a request's resources from a node's free resources (sign -1) or give them back (+1) until Ray
        reports the node's own count: admission then goes on at once, without waiting for the next reading."""
        node = self._free.get(node_id)
        if node is None:
            return
        node.cpus += sign * request.get("cpus", 1)
        node.memory_mb += sign * request.get("memory_mb", 0)
        node.gpus += sign * request.get("gpus", 0)
        for resource, amount in request.get("resources", {}).items():
            node.resources[resource] = node.resources.get(resource, 0) + sign * amount

    def _totals(self) -> list[Capacity]:
        """The live nodes' total resources."""
        nodes = {node_id: node_capacity(n) for node_id, n in ray_state.total_resources_per_node().items()}
        now = time.monotonic()
        self._seen.update((node_id, (now, node)) for node_id, node in nodes.items())
        return list(nodes.values())

    # -- attempts ----------------------------------------------------------------
    def submit(self, job, env: dict, readable: list[str]) -> str:
        kind = kinds.get(job.family)
        name = f"{ACTOR_PREFIX}{job.id}-{job.attempt}"
        # The node keeps its own environment (PATH, its Python's installation): only what the scheduler set for
        # this job travels, not the server's host's variables.
        variables = {key: value for key, value in env.items() if self._base.get(key) != value}
        try:
            actor = self._remote.options(name=name, lifetime="detached", max_restarts=0, max_concurrency=4,
                                         **actor_options(job.resources)).remote(
                job.id, job.attempt, job.account_id, bool(kind and kind.workload.account_dir), variables, readable)
        except ValueError as err:  # a name in use, an option Ray refuses
            raise OSError(f"Ray refused the job's actor: {err}") from None
        node_id = self._fitting(job.resources)  # until Ray reports it, counted against the node it likely goes to
        self._count(node_id, job.resources, -1)
        handle = f"ray:{name}"
        self._ended_logs.pop(job.id, None)
        self._attempts[handle] = _Attempt(job.id, actor, actor.wait.remote(), actor.where.remote(), job.resources,
                                          node_id)
        return handle

    def stop(self, handle: str, force: bool = False) -> None:
        attempt = self._attempts.get(handle)
        if attempt is None:
            return
        if force and attempt.force_sent and time.monotonic() - attempt.force_sent > FORCE_KILL_SECONDS:
            ray.kill(attempt.actor)  # it does not answer: its worker goes with its process
            return
        if force and attempt.force_sent is None:
            attempt.force_sent = time.monotonic()
        attempt.actor.stop.remote(force)

    def poll(self) -> list[tuple[str, int | AttemptLost]]:
        if not self._swept:
            self._sweep()
        self._note_placements()
        by_ref = {attempt.ended: handle for handle, attempt in self._attempts.items()}
        if not by_ref:
            return []
        ready, _ = ray.wait(list(by_ref), num_returns=len(by_ref), timeout=0)
        done = []
        for ref in ready:
            handle = by_ref[ref]
            attempt = self._attempts.pop(handle)
            try:
                code, output = ray.get(ref)
            except RayActorError as err:
                lost = self._lost_node(attempt)
                if lost:
                    done.append((handle, AttemptLost(lost)))
                    continue
                code, output = -signal.SIGKILL, f"The job's Ray actor died: {err}"
            self._remember_log(attempt.job_id, output)
            ray.kill(attempt.actor)  # a detached actor lives until it is killed
            self._release(attempt)
            done.append((handle, code))
        return done

    def _release(self, attempt: _Attempt) -> None:
        """The resources of an attempt whose actor was just killed are free again: counted so at once (a reading
        that had not yet seen them taken is corrected at the next one, VIEW_SECONDS later at most)."""
        if attempt.request is not None:  # None: adopted, its request unknown here
            self._count(attempt.node["node_id"] if attempt.node else attempt.counted_on, attempt.request, +1)

    def _note_placements(self) -> None:
        """Record where each new attempt runs; say once per node when it cannot confine jobs."""
        for attempt in self._attempts.values():
            if attempt.placed is None or not ray.wait([attempt.placed], timeout=0)[0]:
                continue
            try:
                attempt.node = ray.get(attempt.placed)
            except RayActorError:
                pass
            attempt.placed = None
            node = attempt.node
            if node and not node["isolated"] and node["node_id"] not in self._warned_nodes:
                self._warned_nodes.add(node["node_id"])
                log.warning("Job isolation: none on Ray node %s (%s). Job code runs as Ray's user there and can "
                            "read what that user can, such as the other jobs' directories on the node.",
                            node["node_ip"], node["missing"])

    def _lost_node(self, attempt: _Attempt) -> str | None:
        """Why the attempt is gone when its node is no longer alive, else None."""
        if attempt.node is None:
            return None
        alive = {n["NodeID"] for n in ray.nodes() if n.get("Alive")}
        if attempt.node["node_id"] in alive:
            return None
        return f"The Ray node {attempt.node['node_ip']} ({attempt.node['node_id'][:12]}) running the job was lost"

    def adopt(self, job_id: str, handle: str) -> bool:
        name = handle.removeprefix("ray:")
        if not handle.startswith("ray:") or not name.startswith(ACTOR_PREFIX + job_id):
            return False
        try:
            actor = ray.get_actor(name)
        except ValueError:  # no such actor: it ended, or its node was lost
            return False
        try:
            node = ray.get(actor.where.remote(), timeout=CALL_SECONDS)
        except (RayActorError, GetTimeoutError):
            ray.kill(actor)
            return False
        self._attempts[handle] = _Attempt(job_id, actor, actor.wait.remote(), None, None, node=node)
        return True

    def read_log(self, job_id: str) -> str:
        if job_id in self._ended_logs:
            return self._ended_logs[job_id]
        attempt = next((a for a in self._attempts.values() if a.job_id == job_id), None)
        if attempt is None:
            return ""
        try:
            return ray.get(attempt.actor.log.remote(), timeout=CALL_SECONDS)
        except (RayActorError, GetTimeoutError):
            return ""

    def _remember_log(self, job_id: str, output: str) -> None:
        self._ended_logs[job_id] = output
        self._ended_logs.move_to_end(job_id)
        while len(self._ended_logs) > ENDED_LOGS_KEPT:
            self._ended_logs.popitem(last=False)


def _describe(request: dict) -> str:
    parts = [f"{request.get('cpus', 1)} CPUs", f"{request.get('memory_mb', 0)} MiB of memory"]
    if request.get("gpus"):
        parts.append(f"{request['gpus']} GPUs")
    parts += [f"{amount:g} {name}" for name, amount in sorted(request.get("resources", {}).items())]
    return ", ".join(parts)
