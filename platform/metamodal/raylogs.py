"""Ray start-up with its internal chatter kept out of a person's way.

Progress lines are ours (``print`` from rank 0); what Ray's own loggers say at INFO/WARNING
level while things work is noise there. Two sources flood a 2-core run: Train V2's per-report
INFO line (logged through a logger named by its *file path*, which the ``ray.train`` hierarchy
does not reach), and the detached placement-group cleaner, which warns every second that the
state API did not answer while the cores are busy — harmless, since it only acts once the
controller is gone. Both are raised to ERROR in every Ray worker process.
"""

from __future__ import annotations

import logging

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
        # Train V2 turns a worker's print into a root-logger record that reaches the driver
        # beside the print itself: every progress line came twice
        env = {"RAY_TRAIN_ENABLE_PRINT_PATCH": "0", **storage_env()}
        ray.init(include_dashboard=False, log_to_driver=True, configure_logging=False,
                 runtime_env={"worker_process_setup_hook": "metamodal.raylogs.quiet_ray_train_logs",
                              "env_vars": env})  # fmt: skip


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
