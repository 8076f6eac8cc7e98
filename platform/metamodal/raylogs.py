"""Ray start-up with its internal chatter kept out of a person's way.

Progress lines are ours (``print`` from rank 0); what Ray's own loggers say at INFO/WARNING
level while things work is noise there. Two sources flood a 2-core run: Train V2's per-report
INFO line (logged through a logger named by its *file path*, which the ``ray.train`` hierarchy
does not reach), and the detached placement-group cleaner, which warns every second that the
state API did not answer while the cores are busy — harmless, since it only acts once the
controller is gone. Both are raised to ERROR in every Ray worker process.

Unless ``METAMODAL_VERBOSE`` is set (``--verbose``), the driver also filters what workers
forward: their stdout (our progress lines) passes; their stderr (library logging, deprecation
warnings, tqdm bars), Ray's notices and the chatter of Ray's own actors do not, except a kill
for memory. A failing run still raises its worker's traceback in the driver. Ray Data's
progress logs give way to the extraction's own per-modality line, Tune's status tables to the
trials' epoch lines.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

VERBOSE_ENV = "METAMODAL_VERBOSE"
CHATTER = ("_WandbLoggingActor", "MapWorker", "PreemptionWatcher", "ServeController", "ProxyActor",
           "ServeReplica", "SERVE_")  # fmt: skip
MEMORY_KILL = re.compile(r"out of memory|OutOfMemory|memory pressure|low on memory")
# what libraries print to stdout (where our progress goes) that says nothing to a person
LIBRARY_STDOUT = re.compile(r"^DeepSpeed \S+ built successfully")

AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"
AUTH_ENABLED = "Token authentication is enabled for this Ray cluster"

NOISY = ("ray.train.v2._internal.execution.controller.placement_group_cleaner",)


def quiet_ray_train_logs() -> None:
    """Runs in each Ray worker process (``worker_process_setup_hook``) and in train loops."""
    from ray.train.v2._internal.execution import context

    logging.getLogger("ray.train").setLevel(logging.WARNING)
    logging.getLogger(context.__file__).setLevel(logging.WARNING)
    for name in NOISY:
        logging.getLogger(name).setLevel(logging.ERROR)


def start_ray() -> None:
    """``ray.init`` for this process's trainings, unless Ray is already up (a cluster the
    user connected to, or a test's session)."""
    import ray

    if not ray.is_initialized():
        if not verbose():  # logged by ray.init itself, before quiet_driver can act
            logging.getLogger(AUTH_LOGGER).addFilter(_DropNotice(AUTH_ENABLED))
        # Train V2 turns a worker's print into a root-logger record that reaches the driver
        # beside the print itself: every progress line came twice
        env = {"RAY_TRAIN_ENABLE_PRINT_PATCH": "0", **storage_env()}
        ray.init(include_dashboard=False, log_to_driver=True, configure_logging=False,
                 runtime_env={"worker_process_setup_hook": "metamodal.raylogs.quiet_ray_train_logs",
                              "env_vars": env})  # fmt: skip
        if not verbose():
            quiet_driver()


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def keep_line(data: dict[str, Any], line: str) -> bool:
    """Whether a line a Ray process forwarded reaches a quiet driver's console: our own
    progress (a worker's stdout), and a memory kill; not library logging or Ray's notices (a
    failing run raises its worker's traceback in the driver all the same)."""
    if MEMORY_KILL.search(line):
        return True
    source = data.get("actor_name") or data.get("task_name") or ""
    if data.get("pid") in ("raylet", "autoscaler") or data.get("is_err"):
        return False
    return not source.startswith(CHATTER) and not LIBRARY_STDOUT.search(line)


class _DropNotice(logging.Filter):
    """A library's notice that says nothing to a person on a run that works as configured:
    DeepSpeed falling back to the CPU accelerator on a CPU run, Ray announcing on every local
    start that token authentication is on (its warning when it is off still shows)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


def quiet_driver() -> None:
    """Filter forwarded worker output and Ray's error notices (``keep_line``) and quiet Ray
    Data's progress logging. Ray's log printer is private API: if it moved, output stays as Ray
    prints it."""
    import functools

    from ray._private import worker
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    if hasattr(ctx, "issue_detectors_config"):  # "hanging task" warnings fire on every slow (LLM) batch
        ctx.issue_detectors_config.detectors = []
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "bars disabled"
    logging.getLogger("ray.tune").setLevel(logging.ERROR)  # "... may be a performance bottleneck"
    logging.getLogger("DeepSpeed").addFilter(_DropNotice("Setting accelerator to CPU"))  # survives its import
    dispatcher = getattr(worker, "global_worker_stdstream_dispatcher", None)
    print_to = getattr(worker, "print_to_stdstream", None)
    if dispatcher is None or print_to is None or getattr(print_to, "quiet", False):
        return
    filtered = functools.partial(_filtered, print_to)
    filtered.quiet = True  # type: ignore[attr-defined]
    worker.print_to_stdstream = filtered  # the raylet's error notices are printed through it
    ignore_prefix = worker._should_ignore_worker_log_prefix(worker.global_worker)
    dispatcher.remove_handler("ray_print_logs")
    dispatcher.add_handler("ray_print_logs", functools.partial(filtered, ignore_prefix=ignore_prefix))


def _filtered(print_to, data: dict[str, Any], ignore_prefix: bool) -> None:
    lines = [x for x in data.get("lines", []) if keep_line(data, x)]
    if lines:
        print_to({**data, "lines": lines}, ignore_prefix=ignore_prefix)


def storage_env() -> dict[str, str]:
    """The storage setting (S3 credentials and the workspace too) of this process, for every
    Ray worker of the job: a Tune trial or a Serve replica on another node must reach the same
    storage under the same keys."""
    import os

    from metamodal.storage import ENV_ENDPOINT, ENV_URI, ENV_WORKSPACE

    names = (ENV_URI, ENV_ENDPOINT, "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
             "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION")  # fmt: skip
    env = {n: os.environ[n] for n in names if os.environ.get(n)}
    if ENV_URI in env:  # relative run directories keep one key in every process
        env[ENV_WORKSPACE] = os.environ.get(ENV_WORKSPACE) or os.getcwd()
    return env
