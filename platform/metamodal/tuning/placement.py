"""Releasing the placement groups that Ray Train leaves behind when a Tune trial is stopped.

A Tune trial that wraps a Train V2 run is killed when ASHA (or ``max_t``) stops it; the Train
controller dies with it, but the workers' placement group is scoped to the job driver and stays
reserved (ray-project/ray#54305). Ray's own cleaner actor needs the state API, i.e. the
dashboard; without it (local runs, CI) the reservations pile up until the next trial's worker
group never fits — a sweep that hangs. So rank 0 of every training notes its placement group in
the run directory (``train/loop.py``), the trial notes its own actor, and the sweep's driver removes the group once
that actor is dead — not before: a controller still shutting down takes the removal for a worker
failure and starts a new group. Trials also train with ``max_failures=0`` (Tune retries them),
and at the end of a sweep whatever this job still holds from it is released.
"""

from __future__ import annotations

from pathlib import Path

from metamodal.runlog import WORKER_GROUP_NOTE as NOTE

OWNER = ".trial_actor"


def note_owner(out: str | Path) -> None:
    """Called by the Tune trial before it starts the training."""
    import ray

    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / OWNER).write_text(ray.get_runtime_context().get_actor_id() or "")


def owner_dead(out: str | Path) -> bool:
    """Whether the actor noted by ``note_owner`` is gone (GCS, no dashboard needed)."""
    import ray._private.state as state

    note = Path(out) / OWNER
    actor = note.read_text().strip() if note.is_file() else ""
    if not actor:
        return True
    info = state.actors(actor_id=actor)
    return not info or info.get("State") == "DEAD"


def release_worker_group(out: str | Path) -> bool:
    """Remove the placement group noted in ``out`` if it is still there; True if it was."""
    from ray.util.placement_group import placement_group_table

    note = Path(out) / NOTE
    if not note.is_file():
        return False
    pg_hex = note.read_text().strip()
    note.unlink(missing_ok=True)
    state = placement_group_table().get(pg_hex, {}).get("state")
    if state in (None, "REMOVED"):
        return False
    _remove(pg_hex)
    return True


def _remove(pg_hex: str) -> None:
    from ray._raylet import PlacementGroupID
    from ray.util.placement_group import PlacementGroup, remove_placement_group

    remove_placement_group(PlacementGroup(PlacementGroupID(bytes.fromhex(pg_hex))))


def stop_orphan_cleaners() -> int:
    """Ray Train starts one detached ``PlacementGroupCleaner`` per run; without the state API a
    killed run's cleaner polls forever. Ends this job's cleaners on this node (call once the
    job's runs are over); returns how many."""
    import os
    import signal

    import ray
    import ray._private.state as state

    job = ray.get_runtime_context().get_job_id()
    node = ray.get_runtime_context().get_node_id()
    stopped = 0
    for a in state.actors().values():
        if (a.get("ActorClassName", "").endswith("PlacementGroupCleaner") and a.get("State") == "ALIVE"
                and a.get("JobID") == job and a.get("Address", {}).get("NodeID") == node and a.get("Pid")):  # fmt: skip
            try:
                os.kill(int(a["Pid"]), signal.SIGTERM)
                stopped += 1
            except OSError:  # already gone
                pass
    return stopped


def reserved_by_this_job() -> set[str]:
    """Ids of this job's placement groups that still hold (or wait for) resources. A placement
    group id ends with its creator's job id."""
    import ray
    from ray.util.placement_group import placement_group_table

    job = ray.get_runtime_context().get_job_id()
    return {pg for pg, v in placement_group_table().items() if pg.endswith(job) and v["state"] != "REMOVED"}  # fmt: skip


def release_new(before: set[str]) -> int:
    """Remove this job's placement groups that appeared since ``before`` — at the end of a sweep
    all of them are leftovers of killed trials (a dying controller can start one more group)."""
    left = reserved_by_this_job() - before
    for pg in left:
        _remove(pg)
    return len(left)
