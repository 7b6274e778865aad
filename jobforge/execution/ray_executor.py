"""The Ray executor: each job attempt holds its resources in a placement group on a Ray cluster (a slot), and
the node agent of the node Ray placed it on runs its worker.

``jobforge serve --executor ray --ray-address ADDR`` connects the server to
the cluster as a Ray driver (namespace ``jobforge``). Each attempt runs in a
slot: a detached placement group (``jobforge-slot-<random>``) with one bundle
of the job's CPUs, GPUs, memory and custom resources, so Ray reserves them on
a node that has them. There the node's agent
(``jobforge.execution.ray_node_agent``, one detached actor per node, started
when the node is first seen) forks the worker from its warm fork server and
confines it, under the attempt's name (``jobforge-<job id>-<attempt>``). An
attempt thus costs no new Ray worker process and no cold Python start.

A slot whose attempt ended is kept for IDLE_SLOT_SECONDS and given to the
next job asking for the same resources: Ray places a new group only about a
second after another was removed, so reusing it keeps a busy cluster's
throughput. Admission counts idle slots as free; a job of another shape that
needs their node makes them go.

A handle is ``ray:<attempt name>@<slot name>``: a restarted server (or the
server that takes over scheduling) finds the slot by name, the agent of its
node, and adopts the attempt if the agent still runs it (or reads its outcome
if it ended meanwhile), while its worker goes on reporting to the advertised
URL. Slots no attempt of the scheduling server holds are removed.

Admission reads the cluster: ``shortfall`` compares a request with every live
node's total resources (a job that no node can ever hold fails at once), and
``can_start`` with their free resources, less what was submitted since Ray
last reported them. What the server's own long-lived processes hold is on the
server's host, not on the cluster, so it is not counted here.

An attempt whose node agent died with its node is reported as
``AttemptLost``: the scheduler resumes the job from its checkpoints (in the
object store) on another node where its workload can, else fails it saying so.
"""

from __future__ import annotations

import logging
import signal
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass

from jobforge.core import kinds
from jobforge.execution.executor import AttemptLost
from jobforge.execution.resources import Capacity

try:
    import ray
    import ray._private.state as ray_state
    from ray._raylet import AuthenticationMode, get_authentication_mode
    from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError
    from ray.util.placement_group import PlacementGroup, placement_group, placement_group_table
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
except ImportError as err:  # the optional extra
    raise ImportError(f"the ray executor needs Ray: pip install 'jobforge[ray]' ({err})") from None

from jobforge.execution.ray_node_agent import NodeAgent

log = logging.getLogger("jobforge.ray")
NAMESPACE = "jobforge"
ATTEMPT_PREFIX = "jobforge-"  # an attempt, as its node agent knows it: jobforge-<job id>-<attempt>
SLOT_PREFIX = "jobforge-slot-"  # a placement group holding one attempt's resources
IDLE_SLOT_SECONDS = 5.0  # how long a slot whose attempt ended waits for a job of the same resources
AGENT_PREFIX = "jobforge-node-"  # a node agent per node: jobforge-node-<node id>
VIEW_SECONDS = 0.5  # how long a reading of the nodes' free resources is used
PLACE_SECONDS = 1.0  # how long submit waits for Ray to place an attempt's group (else poll goes on waiting)
CALL_SECONDS = 10.0  # the longest a call to a node agent is waited for
AGENT_CONCURRENCY = 1000  # calls a node agent serves at once: one waits for each of its attempts
# A node lost this recently may come back (restarted, replaced): a job that only it could hold waits for it.
NODE_RETURN_SECONDS = 300.0
ENDED_LOGS_KEPT = 256
_NOT_CUSTOM = ("CPU", "GPU", "memory", "object_store_memory")


@dataclass
class _Slot:
    name: str
    group: PlacementGroup
    request: dict | None  # None: adopted, its request unknown here
    node_id: str | None = None  # once Ray has placed it
    idle_since: float | None = None


@dataclass
class _Attempt:
    job_id: str
    name: str
    slot: "_Slot"
    run: dict  # what the node agent's run() is given
    request: dict | None  # the job's resources, held on its node until the group is removed
    counted_on: str | None = None  # the node whose free resources it was counted against at submission
    placing: object | None = None  # the ObjectRef of the group's ready(), until the worker is started
    agent: object | None = None  # the node agent's handle, once the group is placed
    ended: object | None = None  # the ObjectRef of the agent's run() or wait()
    placed: object | None = None  # the ObjectRef of the agent's where(), until it is read
    node: dict | None = None  # node_id, node_ip of the group's node
    cancelled: int | None = None  # stopped before its worker started: the exit status poll reports


def node_capacity(resources: dict) -> Capacity:
    """A node's resources as Ray reports them (memory in bytes), as a Capacity."""
    custom = {name: amount for name, amount in resources.items()
              if name not in _NOT_CUSTOM and not name.startswith(("node:", "accelerator_type:"))
              and "_group_" not in name}  # a placement group's own resources (CPU_group_<id>, ...)
    return Capacity(int(resources.get("CPU", 0)), int(resources.get("memory", 0) // 2**20),
                    int(resources.get("GPU", 0)), custom)


def bundle(request: dict) -> dict:
    """Ray's resources for one instance of a job's request (memory in bytes)."""
    resources = {"CPU": request.get("cpus", 1), "GPU": request.get("gpus", 0),
                 "memory": request.get("memory_mb", 0) * 2**20, **request.get("resources", {})}
    return {name: amount for name, amount in resources.items() if amount}


class RayExecutor:
    def __init__(self, settings):
        self.settings = settings
        self._attempts: dict[str, _Attempt] = {}  # handle → attempt
        self._agents: dict[str, object] = {}  # node id → its node agent's handle
        self._idle: dict[str, _Slot] = {}  # slot name → a slot whose attempt ended
        self._node_ips: dict[str, str] = {}
        self._ended_logs: OrderedDict[str, str] = OrderedDict()  # job id → the end of its last worker's output
        self._base: dict = {}
        self._free: dict[str, Capacity] = {}  # node id → its free resources, as last read (and counted since)
        self._free_read = 0.0
        self._warned_nodes: set[str] = set()
        self._seen: dict[str, tuple[float, Capacity]] = {}  # node id → when it was last seen alive, its size
        self._agent_class = None
        self._swept = False

    # -- lifecycle ---------------------------------------------------------------
    def start(self, environment: dict) -> None:
        handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
        ray.init(address=self.settings.ray_address, namespace=NAMESPACE, log_to_driver=False,
                 logging_level=logging.WARNING)
        for sig, handler in handlers.items():  # Ray's would exit at once: the server's stop gracefully
            signal.signal(sig, handler)
        self._base = environment
        self._agent_class = ray.remote(NodeAgent)
        if get_authentication_mode() != AuthenticationMode.TOKEN:
            log.warning("The Ray cluster does not use token authentication: job code can reach the cluster's "
                        "ports and run any code on any node as the user Ray runs as. Start the cluster with "
                        "RAY_AUTH_MODE=token (a token from 'ray get-auth-token --generate') to keep jobs out.")
        nodes = self._totals()  # and the node agents started, warm before the first job
        log.info("Ray cluster at %s: %d nodes, %s CPUs, %s GPUs", self.settings.ray_address, len(nodes),
                 sum(n.cpus for n in nodes), sum(n.gpus for n in nodes))

    def shutdown(self) -> None:
        """The attempts go on running on the cluster: the next server to schedule adopts them."""
        for slot in self._idle.values():
            ray.util.remove_placement_group(slot.group)
        self._idle.clear()
        self._attempts.clear()
        self._agents.clear()
        if ray.is_initialized():
            ray.shutdown()

    def _agent(self, node_id: str):
        """The node's agent: the one running, else a new one (also when the one known here has died)."""
        if node_id not in self._agents:
            self._agents[node_id] = self._agent_class.options(
                name=f"{AGENT_PREFIX}{node_id}", get_if_exists=True, lifetime="detached", num_cpus=0,
                max_restarts=0, max_concurrency=AGENT_CONCURRENCY,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False)).remote()
        return self._agents[node_id]

    def _sweep(self) -> None:
        """End what no job is running any more: the attempts whose server was down when they, or their jobs,
        ended. Done at the first poll, once the attempts still running have been adopted."""
        ours = {attempt.name for attempt in self._attempts.values()}
        slots = {attempt.slot.name for attempt in self._attempts.values()} | self._idle.keys()
        for group in placement_group_table().values():
            name = group["name"]
            if name.startswith(SLOT_PREFIX) and name not in slots and group["state"] != "REMOVED":
                _remove_group(name)
        for node_id, agent in list(self._agents.items()):
            try:
                names = ray.get(agent.names.remote(), timeout=CALL_SECONDS)
            except (RayActorError, GetTimeoutError):
                self._agents.pop(node_id, None)
                continue
            for name in names:
                if name not in ours:
                    agent.end.remote(name)
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
            for slot in self._idle.values():
                self._count(slot.node_id, slot.request, +1)
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
        """The live nodes' total resources; a node seen for the first time gets its agent started."""
        nodes = {node_id: node_capacity(n) for node_id, n in ray_state.total_resources_per_node().items()}
        now = time.monotonic()
        for node_id in nodes.keys() - self._agents.keys():
            self._agent(node_id)
        for slot in [s for s in self._idle.values() if s.node_id not in nodes]:  # its node is gone
            ray.util.remove_placement_group(slot.group)
            del self._idle[slot.name]
        self._seen.update((node_id, (now, node)) for node_id, node in nodes.items())
        return list(nodes.values())

    # -- attempts ----------------------------------------------------------------
    def submit(self, job, env: dict, readable: list[str]) -> str:
        kind = kinds.get(job.family)
        name = f"{ATTEMPT_PREFIX}{job.id}-{job.attempt}"
        # The node keeps its own environment (PATH, its Python's installation): only what the scheduler set for
        # this job travels, not the server's host's variables.
        variables = {key: value for key, value in env.items() if self._base.get(key) != value}
        run = {"name": name, "job_id": job.id, "account_id": job.account_id,
               "account_dir": bool(kind and kind.workload.account_dir), "variables": variables,
               "readable": readable, "preload": list(kind.workload.preload) if kind else [],
               "gpus": job.resources.get("gpus", 0)}
        slot = next((s for s in self._idle.values() if s.request == job.resources), None)
        if slot is not None:
            del self._idle[slot.name]
            slot.idle_since = None
            attempt = _Attempt(job.id, name, slot, run, job.resources, slot.node_id)
        else:
            node_id = self._fitting(job.resources)  # until Ray reports it, counted against the node it likely goes to
            for idle in [s for s in self._idle.values() if s.node_id == node_id]:  # other shapes: they make room
                ray.util.remove_placement_group(idle.group)
                del self._idle[idle.name]
            slot_name = f"{SLOT_PREFIX}{uuid.uuid4().hex[:16]}"
            try:
                group = placement_group([bundle(job.resources)], strategy="STRICT_PACK", name=slot_name,
                                        lifetime="detached")
            except ValueError as err:  # resources Ray refuses
                raise OSError(f"Ray refused the job's placement group: {err}") from None
            attempt = _Attempt(job.id, name, _Slot(slot_name, group, job.resources), run, job.resources, node_id,
                               placing=group.ready())
        self._count(attempt.counted_on, job.resources, -1)
        handle = f"ray:{name}@{attempt.slot.name}"
        self._ended_logs.pop(job.id, None)
        self._attempts[handle] = attempt
        self._start_when_placed(attempt, PLACE_SECONDS)
        return handle

    def _start_when_placed(self, attempt: _Attempt, timeout: float) -> None:
        """Once Ray has placed the attempt's slot (waited for up to timeout), its node's agent starts the worker."""
        if attempt.placing is not None:
            if not ray.wait([attempt.placing], timeout=timeout)[0]:
                return
            attempt.placing = None
            attempt.slot.node_id = placement_group_table(attempt.slot.group)["bundles_to_node_id"][0]
        node_id = attempt.slot.node_id
        attempt.node = {"node_id": node_id, "node_ip": self._node_ip(node_id)}
        attempt.agent = self._agent(node_id)
        attempt.ended = attempt.agent.run.remote(**attempt.run)
        attempt.placed = attempt.agent.where.remote(attempt.name)

    def stop(self, handle: str, force: bool = False) -> None:
        attempt = self._attempts.get(handle)
        if attempt is None:
            return
        if attempt.agent is None:  # not placed yet: nothing runs
            attempt.cancelled = -signal.SIGKILL if force else -signal.SIGTERM
            return
        attempt.agent.stop.remote(attempt.name, force)

    def poll(self) -> list[tuple[str, int | AttemptLost]]:
        if not self._swept:
            self._sweep()
        for slot in [s for s in self._idle.values() if time.monotonic() - s.idle_since > IDLE_SLOT_SECONDS]:
            ray.util.remove_placement_group(slot.group)
            del self._idle[slot.name]
        done = []
        for handle, attempt in list(self._attempts.items()):
            if attempt.cancelled is not None:
                del self._attempts[handle]
                self._end(attempt, keep_slot=False)
                done.append((handle, attempt.cancelled))
            elif attempt.placing is not None:
                self._start_when_placed(attempt, 0)
        self._note_placements()
        by_ref = {attempt.ended: handle for handle, attempt in self._attempts.items() if attempt.ended is not None}
        if not by_ref:
            return done
        ready, _ = ray.wait(list(by_ref), num_returns=len(by_ref), timeout=0)
        for ref in ready:
            handle = by_ref[ref]
            attempt = self._attempts.pop(handle)
            try:
                outcome = ray.get(ref)
            except RayActorError as err:
                lost = self._lost_node(attempt)
                if lost:
                    ray.util.remove_placement_group(attempt.slot.group)
                    done.append((handle, AttemptLost(lost)))
                    continue
                self._agents.pop(attempt.node["node_id"], None)  # a new one next time
                outcome = (-signal.SIGKILL, f"The node agent running the job's worker on Ray died: {err}")
            except RayTaskError as err:  # the worker could not be started
                outcome = (1, f"jobforge: could not start the job's worker on the Ray node: {err.cause}")
            if outcome is None:  # adopted, but the agent no longer knows it
                outcome = (-signal.SIGKILL, "The job's worker on Ray ended without an outcome")
            code, output = outcome
            self._remember_log(attempt.job_id, output)
            attempt.agent.forget.remote(attempt.name)
            self._end(attempt)
            done.append((handle, code))
        return done

    def _end(self, attempt: _Attempt, keep_slot: bool = True) -> None:
        """The attempt's slot waits for the next job of its shape, or goes; either way its resources count as free
        again at once (a reading that had not yet seen them taken is corrected at the next one, VIEW_SECONDS later
        at most)."""
        slot = attempt.slot
        if keep_slot and slot.request is not None and slot.node_id is not None:
            slot.idle_since = time.monotonic()
            self._idle[slot.name] = slot
        else:
            ray.util.remove_placement_group(slot.group)
        if attempt.request is not None:
            self._count(slot.node_id or attempt.counted_on, attempt.request, +1)

    def _note_placements(self) -> None:
        """Say once per node when it cannot confine jobs."""
        for attempt in self._attempts.values():
            if attempt.placed is None or not ray.wait([attempt.placed], timeout=0)[0]:
                continue
            try:
                where = ray.get(attempt.placed)
            except (RayActorError, RayTaskError):
                where = None
            attempt.placed = None
            if where and not where["isolated"] and where["node_id"] not in self._warned_nodes:
                self._warned_nodes.add(where["node_id"])
                log.warning("Job isolation: none on Ray node %s (%s). Job code runs as Ray's user there and can "
                            "read what that user can, such as the other jobs' directories on the node.",
                            where["node_ip"], where["missing"])

    def _lost_node(self, attempt: _Attempt) -> str | None:
        """Why the attempt is gone when its node is no longer alive, else None."""
        if attempt.node is None:
            return None
        alive = {n["NodeID"] for n in ray.nodes() if n.get("Alive")}
        if attempt.node["node_id"] in alive:
            return None
        self._agents.pop(attempt.node["node_id"], None)
        return f"The Ray node {attempt.node['node_ip']} ({attempt.node['node_id'][:12]}) running the job was lost"

    def adopt(self, job_id: str, handle: str) -> bool:
        name, _, slot_name = handle.removeprefix("ray:").partition("@")
        if not handle.startswith("ray:") or not name.startswith(f"{ATTEMPT_PREFIX}{job_id}-") or not slot_name:
            return False
        try:
            group = ray.util.get_placement_group(slot_name)
        except ValueError:  # no such slot: the attempt ended, or it was started otherwise
            return False
        table = placement_group_table(group)
        node_id = table["bundles_to_node_id"].get(0) if table["state"] == "CREATED" else None
        try:
            agent = ray.get_actor(f"{AGENT_PREFIX}{node_id}") if node_id else None
            known = agent is not None and name in ray.get(agent.names.remote(), timeout=CALL_SECONDS)
        except (ValueError, RayActorError, GetTimeoutError):  # its node (and agent) lost, or the agent is stuck
            known = False
        if not known:
            _remove_group(slot_name)
            return False
        self._agents[node_id] = agent
        self._attempts[handle] = _Attempt(job_id, name, _Slot(slot_name, group, None, node_id), {}, None, agent=agent,
                                          ended=agent.wait.remote(name), node={"node_id": node_id,
                                                                                "node_ip": self._node_ip(node_id)})
        return True

    def read_log(self, job_id: str) -> str:
        if job_id in self._ended_logs:
            return self._ended_logs[job_id]
        attempt = next((a for a in self._attempts.values() if a.job_id == job_id and a.agent is not None), None)
        if attempt is None:
            return ""
        try:
            return ray.get(attempt.agent.log.remote(attempt.name), timeout=CALL_SECONDS)
        except (RayActorError, GetTimeoutError):
            return ""

    def _node_ip(self, node_id: str) -> str:
        if node_id not in self._node_ips:
            self._node_ips.update((n["NodeID"], n["NodeManagerAddress"]) for n in ray.nodes())
        return self._node_ips.get(node_id, "unknown address")

    def _remember_log(self, job_id: str, output: str) -> None:
        self._ended_logs[job_id] = output
        self._ended_logs.move_to_end(job_id)
        while len(self._ended_logs) > ENDED_LOGS_KEPT:
            self._ended_logs.popitem(last=False)


def _remove_group(name: str) -> None:
    try:
        ray.util.remove_placement_group(ray.util.get_placement_group(name))
    except ValueError:  # removed meanwhile
        pass


def _describe(request: dict) -> str:
    parts = [f"{request.get('cpus', 1)} CPUs", f"{request.get('memory_mb', 0)} MiB of memory"]
    if request.get("gpus"):
        parts.append(f"{request['gpus']} GPUs")
    parts += [f"{amount:g} {name}" for name, amount in sorted(request.get("resources", {}).items())]
    return ", ".join(parts)
