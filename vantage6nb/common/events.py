"""Socket.io event names and room names shared by server, node and client."""

from __future__ import annotations

__all__ = [
    "KILL",
    "NAMESPACE",
    "NEW_TASK",
    "NODE_OFFLINE",
    "NODE_ONLINE",
    "RUN_STATUS",
    "TASK_CREATED",
    "collaboration_room",
    "node_room",
    "organization_room",
]

NAMESPACE = "/"

# server -> node rooms: {"task_id", "run_ids", "collaboration_id"}
NEW_TASK = "new_task"
# server -> collaboration rooms: a run's status changed; payload is the run summary (see schemas.run_event)
RUN_STATUS = "run_status"
# server -> collaboration rooms: {"node_id", "name", "organization_id", "collaboration_id", "status", "last_seen"}
NODE_ONLINE = "node_online"
NODE_OFFLINE = "node_offline"
# server -> node rooms: {"task_id", "run_ids"}
KILL = "kill"
# server -> collaboration rooms: {"task_id", "collaboration_id", "name", "organization_ids"}
TASK_CREATED = "task_created"


def collaboration_room(collaboration_id: int) -> str:
    return f"collaboration_{collaboration_id}"


def organization_room(organization_id: int) -> str:
    return f"organization_{organization_id}"


def node_room(node_id: int) -> str:
    return f"node_{node_id}"
