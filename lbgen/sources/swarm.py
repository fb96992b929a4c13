"""Swarm discovery: the running tasks of services labelled `<prefix>.service` (as a service label or a
container label) -> Backends at each task's own address on the overlay network, never the service VIP."""
from __future__ import annotations

from lbgen import grammar
from lbgen.engine import Engine, ServiceInfo, TaskInfo
from lbgen.model import Backend, Inventory, Skipped
from lbgen.sources import Networks, sort_backends
from lbgen.sources.docker import read_labels

# Task states in which a task's container runs (Swarm reports `starting` until a HEALTHCHECK passes).
_LIVE = ("starting", "running")


class SwarmSource:
    """Tasks of labelled Swarm services, through a manager. Only tasks Swarm wants running are routed: a
    task whose desired state is shutdown leaves its pool before Swarm stops it."""

    def __init__(self, engine: Engine, networks: Networks, label_prefix: str = "lbgen") -> None:
        self.engine = engine
        self.networks = networks
        self.prefix = grammar.label_prefix(label_prefix)
        self.services: tuple[ServiceInfo, ...] = ()  # as of the last discover(), for callers that scale them

    def discover(self) -> Inventory:
        label = f"{self.prefix}.service"
        services = {s.id: s for s in self.engine.list_services(label)}
        self.services = tuple(services.values())
        backends: list[Backend] = []
        skipped: list[Skipped] = []
        for task in self.engine.list_tasks(sorted(services)):
            service = services.get(task.service_id)
            if service is None or task.state not in _LIVE:
                continue  # Swarm keeps a history of finished tasks: they are not news
            result = self.backend(service, task)
            if isinstance(result, Backend):
                backends.append(result)
            elif result is not None:
                skipped.append(result)
        return Inventory(sort_backends(backends), tuple(sorted(skipped, key=lambda s: (s.name, s.reason))))

    def backend(self, service: ServiceInfo, task: TaskInfo) -> Backend | Skipped | None:
        """One live task as a Backend, a Skipped saying why not, or None for a task on its way out."""
        name = task_name(service, task)
        try:
            name = grammar.container_name(name)
        except ValueError as e:
            return Skipped(grammar._show(name), str(e), "task")
        if task.desired_state != "running":
            return None  # Swarm is stopping it: out of the pool before it goes
        try:
            # Container labels are more specific than service labels: they win where both say something.
            labels = read_labels(self.prefix, {**service.labels, **service.container_labels})
        except ValueError as e:
            return Skipped(name, str(e), "task")
        if labels.port is None:
            return Skipped(name, f"no {self.prefix}.port label (a Swarm service's image ports are not "
                                 f"known to the manager); set {self.prefix}.port", "task")
        found = self.networks.pick(task.networks, task.network_ids)
        if isinstance(found, str):
            return Skipped(name, found, "task")
        network, ip = found
        try:
            address = grammar.address(ip)
            backend_id = grammar.container_id(task.container_id or task.id)
            node = grammar.container_name(task.node) if task.node else None
        except ValueError as e:
            return Skipped(name, str(e), "task")
        # Swarm holds a task in `starting` until its HEALTHCHECK (from the spec or the image) passes: the
        # gate waits for it and routing keeps it out of every pool until it is running.
        health = "starting" if task.state == "starting" else ("healthy" if service.healthcheck else None)
        return Backend(service=labels.service, env=labels.env, name=name, id=backend_id, address=address,
                       port=labels.port, weight=labels.weight, backup=labels.backup, docker_health=health,
                       source="swarm", network=network, swarm_service=service.name, node=node)


def task_name(service: ServiceInfo, task: TaskInfo) -> str:
    """The name Docker gives the task's container: `<service>.<slot>.<task id>` (`<service>.<node id>.<task
    id>` for a global service)."""
    return f"{service.name}.{task.slot if task.slot is not None else task.node_id}.{task.id}"
