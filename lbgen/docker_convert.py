"""Docker's JSON (container inspect and list, services, tasks, events) -> lbgen's plain records
(ContainerInfo, ServiceInfo, TaskInfo, EngineEvent). Pure: docker_engine.py fetches, this converts."""
from __future__ import annotations

import re
from typing import Any, Collection, Mapping

from lbgen.engine import SWARM_TASK_LABEL, ContainerInfo, EngineEvent, Mount, ServiceInfo, TaskInfo

_HEALTH_IN_STATUS = re.compile(r"\((healthy|unhealthy|health: starting)\)")
# Container and network events that can change what is routable. Docker matches `health_status` against
# `health_status: healthy` etc. itself; exec_* events (every HEALTHCHECK run makes some) are left out.
EVENT_ACTIONS = ("start", "restart", "die", "kill", "stop", "pause", "unpause", "destroy", "rename",
                  "health_status", "connect", "disconnect")
_NOT_LABELS = ("name", "image", "exitCode", "signal", "execID")  # event attributes that are not labels
# On a Swarm manager, service events (scale, `service update`, remove) become EngineEvents with action
# `service-<what>`; a task's container carries this label, so its events count even when the lbgen
# labels are on the service (`--label`) rather than on the containers (`--container-label`).
SERVICE_ACTIONS = ("create", "update", "remove")


def info_from_inspect(data: Mapping[str, Any]) -> ContainerInfo:
    """ContainerInfo from `GET /containers/{id}/json`."""
    state = data.get("State") or {}
    config = data.get("Config") or {}
    health = (state.get("Health") or {}).get("Status") or None
    networks, network_ids = _networks((data.get("NetworkSettings") or {}).get("Networks"))
    exposed = set()
    for key in config.get("ExposedPorts") or {}:
        number, _, proto = str(key).partition("/")
        if proto in ("", "tcp") and number.isdigit():
            exposed.add(int(number))
    return ContainerInfo(
        id=data["Id"],
        name=str(data.get("Name") or "").lstrip("/"),
        labels=dict(config.get("Labels") or {}),
        # A paused or restarting container is "running" to Docker, but it answers no requests.
        running=bool(state.get("Running")) and not state.get("Paused") and not state.get("Restarting"),
        health=None if health == "none" else health,
        networks=networks,
        network_ids=network_ids,
        exposed_ports=tuple(sorted(exposed)),
        image=str(data.get("Image") or ""),
        command=tuple([data["Path"]] if data.get("Path") else []) + tuple(data.get("Args") or ()),
        mounts=tuple(_mount(m) for m in data.get("Mounts") or ()),
        read_only_rootfs=bool((data.get("HostConfig") or {}).get("ReadonlyRootfs")),
        user=str(config.get("User") or ""),
    )


def _mount(raw: Mapping[str, Any]) -> Mount:
    return Mount(type=str(raw.get("Type") or ""), destination=str(raw.get("Destination") or ""),
                 source=str(raw.get("Source") or ""), name=str(raw.get("Name") or ""), rw=bool(raw.get("RW", True)))


def info_from_summary(data: Mapping[str, Any]) -> ContainerInfo:
    """ContainerInfo from one entry of `GET /containers/json` (no inspect per container).

    Docker builds the summary's Command by joining Path and Args with spaces, quoting an argument that
    contains a space in single quotes; splitting it back is exact unless an argument holds a quote, a tab
    or a newline. Health comes from the Status text ("Up 3 seconds (health: starting)"); exposed ports
    from Ports, which Docker fills for running containers only.
    """
    names = [str(n).lstrip("/") for n in data.get("Names") or ()]
    own = [n for n in names if "/" not in n]  # legacy links add names like "/other/alias"
    match = _HEALTH_IN_STATUS.search(str(data.get("Status") or ""))
    health = None if match is None else match.group(1).replace("health: ", "")
    networks, network_ids = _networks((data.get("NetworkSettings") or {}).get("Networks"))
    ports = {p["PrivatePort"] for p in data.get("Ports") or () if p.get("Type") == "tcp" and p.get("PrivatePort")}
    return ContainerInfo(
        id=data["Id"],
        name=(own or names or [""])[0],
        labels=dict(data.get("Labels") or {}),
        running=data.get("State") == "running",
        health=health,
        networks=networks,
        network_ids=network_ids,
        exposed_ports=tuple(sorted(int(p) for p in ports)),
        image=str(data.get("ImageID") or ""),
        command=_split_command(str(data.get("Command") or "")),
    )


def service_from_inspect(data: Mapping[str, Any]) -> ServiceInfo:
    """ServiceInfo from `GET /services/{id}` (or one entry of `GET /services`)."""
    spec = data.get("Spec") or {}
    container = (spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}
    mode = spec.get("Mode") or {}
    replicas = (mode.get("Replicated") or {}).get("Replicas") if "Replicated" in mode else None
    update = str((data.get("UpdateStatus") or {}).get("State") or "")
    test = (container.get("Healthcheck") or {}).get("Test") or []
    return ServiceInfo(
        id=str(data["ID"]),
        name=str(spec.get("Name") or ""),
        labels=dict(spec.get("Labels") or {}),
        container_labels=dict(container.get("Labels") or {}),
        replicas=None if replicas is None else int(replicas),
        healthcheck=bool(test) and test[0] != "NONE",
        updating=update in ("updating", "rollback_started"),
    )


def task_from_inspect(data: Mapping[str, Any], nodes: Mapping[str, str]) -> TaskInfo:
    """TaskInfo from one entry of `GET /tasks`; `nodes` maps node ids to hostnames."""
    status = data.get("Status") or {}
    networks: dict[str, str] = {}
    network_ids: dict[str, str] = {}
    for attachment in data.get("NetworksAttachments") or ():
        network = attachment.get("Network") or {}
        name = str((network.get("Spec") or {}).get("Name") or "")
        if not name:
            continue
        network_ids[name] = str(network.get("ID") or "")
        addresses = [str(a).split("/", 1)[0] for a in attachment.get("Addresses") or () if a]
        if addresses:
            networks[name] = addresses[0]
    node_id = str(data.get("NodeID") or "")
    slot = data.get("Slot")
    return TaskInfo(
        id=str(data["ID"]),
        service_id=str(data.get("ServiceID") or ""),
        slot=int(slot) if isinstance(slot, int) and slot > 0 else None,
        node_id=node_id,
        node=nodes.get(node_id, ""),
        state=str(status.get("State") or ""),
        desired_state=str(data.get("DesiredState") or ""),
        container_id=str((status.get("ContainerStatus") or {}).get("ContainerID") or ""),
        networks=networks,
        network_ids=network_ids,
    )


def event_from_message(message: Mapping[str, Any], label: str, names: Collection[str] = ()) -> EngineEvent | None:
    """EngineEvent from one decoded `/events` message, or None when it is not a container event for `label`
    (or a Swarm task's container), nor a Swarm service event.

    `health_status: healthy` becomes action `health_status`: watch re-inspects for the status itself.
    """
    actor = message.get("Actor") or {}
    attributes = dict(actor.get("Attributes") or {})
    action = str(message.get("Action") or message.get("status") or "").split(":", 1)[0].strip()
    if message.get("Type") == "service" and action in SERVICE_ACTIONS:
        return EngineEvent(action=f"service-{action}", container_id=str(actor.get("ID") or ""),
                           container_name=str(attributes.get("name", "")), labels={label: ""},
                           time=event_time(message))
    if message.get("Type") != "container":
        return None
    if label not in attributes and SWARM_TASK_LABEL not in attributes and attributes.get("name") not in names:
        return None
    if action not in EVENT_ACTIONS:
        return None  # `create`/`update` of a container, asked for because services use those names
    return EngineEvent(
        action=action,
        container_id=str(actor.get("ID") or message.get("id") or ""),
        container_name=str(attributes.get("name", "")),
        labels={k: v for k, v in attributes.items() if k not in _NOT_LABELS},
        time=event_time(message),
        signal=str(attributes["signal"]) if "signal" in attributes else None,
    )


def _networks(raw: Mapping[str, Any] | None) -> tuple[dict[str, str], dict[str, str]]:
    """(name -> IP, name -> network id). A network where the container has no address (it is stopped,
    or the network gives none) is left out of the first."""
    addresses: dict[str, str] = {}
    ids: dict[str, str] = {}
    for name, endpoint in sorted((raw or {}).items()):
        endpoint = endpoint or {}
        ip = endpoint.get("IPAddress") or endpoint.get("GlobalIPv6Address")
        if ip:
            addresses[name] = ip
        if endpoint.get("NetworkID"):
            ids[name] = endpoint["NetworkID"]
    return addresses, ids


def _split_command(command: str) -> tuple[str, ...]:
    import shlex

    try:
        return tuple(shlex.split(command))
    except ValueError:  # an argument with an unbalanced quote in it
        return tuple(command.split())


def event_time(message: Mapping[str, Any]) -> float:
    if message.get("timeNano"):
        return int(message["timeNano"]) / 1e9
    return float(message.get("time") or 0.0)


