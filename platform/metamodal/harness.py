"""The one Ray Train harness the zoo, CLIP alignment and the MMA policy train through.

The driver side (``fit``) starts Ray, places the workers (GPUs when the cluster has them, else
an equal share of the CPUs), names the run's checkpoint storage (inside its run directory, or
in the configured ``metamodal.storage`` that every node reaches; the same command again resumes
from the last checkpoint there) and turns a run that reported no checkpoint into an error. The
worker side (``Worker``, handed to each trainer's step code) knows its rank and device, reports
checkpoints and restores them, and hands rank 0's metrics rows to the driver with its reports:
``RunLog`` writes them into the run directory on the driver's node (workers on other nodes
cannot reach it), rewound to the resumed epoch, so a resumed or restarted run's log reads like
an uninterrupted one. The trainers themselves hold only their per-step code and a typed config.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from metamodal.runlog import FOR_DRIVER, RunLog, logged_through


@dataclass(frozen=True)
class Placement:
    use_gpu: bool
    scaling: Any  # ray.train.ScalingConfig
    cpus_per_worker: float


def placement(workers: int, use_gpu: bool | None, cpus: float | None = None,
              strategy: str = "PACK") -> Placement:  # fmt: skip
    """Start Ray if needed and place ``workers`` (``strategy``: Ray's placement-group strategy
    over nodes). ``use_gpu=None``: when the cluster has GPUs. On CPU each worker takes an equal
    whole share of the cluster's CPUs, or ``cpus`` (Tune trials run several trainings side by
    side)."""
    import ray
    from ray.train import ScalingConfig

    from metamodal.raylogs import start_ray

    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")  # else reports lag
    start_ray()
    res = ray.cluster_resources()
    use_gpu = use_gpu if use_gpu is not None else res.get("GPU", 0) > 0
    share = max(1.0, float(res.get("CPU", 1)) // workers) if not use_gpu else 1.0
    share = cpus if cpus is not None and not use_gpu else share
    scaling = ScalingConfig(num_workers=workers, use_gpu=use_gpu, placement_strategy=strategy,
                            resources_per_worker=None if use_gpu else {"CPU": share})  # fmt: skip
    return Placement(use_gpu, scaling, share)


def side_by_side_share(concurrent: int) -> tuple[int, float]:
    """(runs at once, each one's CPUs) for trainings placed side by side on the cluster's CPUs:
    half a CPU stays free for Ray's own actors (runs that claim every CPU can wait forever for
    a worker group) and 0.05 for a Tune trial's own actor. Small models scale poorly past one
    thread, so one-thread runs side by side finish sooner than the same runs one after another
    on every core, and one run's start-up overlaps another's training."""
    import ray

    placement(1, None)  # starts Ray the way training does
    cpus = float(ray.cluster_resources().get("CPU", 1))
    concurrent = max(1, min(concurrent, int(cpus)))
    return concurrent, max(0.25, round((cpus - 0.5) / concurrent - 0.05, 2))


@dataclass(frozen=True)
class RunSpec:
    """Where and how a training runs: ``out`` is its run directory (``ray_results/`` and the
    metrics log live there), ``name`` its Ray Train name (the same name resumes)."""

    name: str
    out: Path
    workers: int = 1
    use_gpu: bool | None = None
    cpus_per_worker: float | None = None
    max_failures: int = 0
    metrics_file: str = "metrics.jsonl"
    env_vars: tuple[tuple[str, str], ...] = ()  # set in each worker before its imports
    threads: int | None = None  # torch threads per worker; default: its CPU share
    placement_strategy: str = "PACK"  # Ray's placement-group strategy over the nodes


StepCode = Callable[[Any, "Worker"], None]


def fit(step_code: StepCode, cfg: Any, spec: RunSpec, callbacks: list | None = None,
        require_checkpoint: bool = True):  # fmt: skip
    """Run ``step_code(cfg, worker)`` on every worker; the ``ray.train.Result``."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig
    from ray.train.torch import TorchTrainer

    from metamodal.storage import Storage

    place = placement(spec.workers, spec.use_gpu, spec.cpus_per_worker, spec.placement_strategy)
    # Absolute: Ray Train reads a relative storage path as a URI without a scheme, and a
    # worker on another node does not start in the driver's working directory.
    out = Path(spec.out).resolve()
    storage = Storage.from_env()
    where, fs = (storage.train_storage(out) if storage else (str(out / "ray_results"), None))
    log = RunLog(str(out), spec.metrics_file, storage)
    loop = {"step_code": step_code, "cfg": cfg, "out": str(out), "use_gpu": place.use_gpu,
            "env_vars": dict(spec.env_vars), "metrics_file": spec.metrics_file,
            "threads": spec.threads or max(1, int(place.cpus_per_worker))}  # fmt: skip
    trainer = TorchTrainer(
        _entry,
        train_loop_config=loop,
        scaling_config=place.scaling,
        run_config=RunConfig(
            name=spec.name,
            storage_path=where,
            storage_filesystem=fs,
            checkpoint_config=CheckpointConfig(num_to_keep=1),
            failure_config=FailureConfig(max_failures=spec.max_failures),
            callbacks=[log, *(callbacks or [])],  # first: it takes its rows out of the metrics
        ),
    )
    result = trainer.fit()
    if require_checkpoint and result.checkpoint is None:
        raise RuntimeError(f"{spec.name}: no checkpoint was reported ({result.error})")
    return result


def copy_from_checkpoint(result: Any, names: list[str], out: Path) -> None:
    """Folders of the result's checkpoint into ``out`` (each whole, or the old one kept): what
    rank 0 wrote on its own node reaches the driver's run directory."""
    with result.checkpoint.as_directory() as d:
        for name in names:
            tmp = out / f"{name}.{os.getpid()}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(Path(d) / name, tmp)
            shutil.rmtree(out / name, ignore_errors=True)
            tmp.rename(out / name)


def read_checkpoint(result_or_ckpt: Any, names: list[str]) -> dict[str, Any]:
    """Files of a checkpoint (``.pt``: tensors only; ``.json``: parsed), by name."""
    ckpt = getattr(result_or_ckpt, "checkpoint", result_or_ckpt)
    with ckpt.as_directory() as d:
        return {n: _load(Path(d) / n) for n in names}


def _load(p: Path) -> Any:
    if p.suffix == ".json":
        return json.loads(p.read_text())
    return torch.load(p, weights_only=True, map_location="cpu")


def _entry(loop: dict) -> None:
    """Each worker's first frame: environment, quiet logs, threads, then the step code."""
    os.environ.update(loop["env_vars"])  # before DeepSpeed (or anything reading them) imports
    if not loop["use_gpu"]:
        os.environ["DS_ACCELERATOR"] = "cpu"  # a CPU worker on a GPU node must not pick CUDA
    from metamodal.raylogs import quiet_ray_train_logs

    quiet_ray_train_logs()
    torch.set_num_threads(loop["threads"])
    loop["step_code"](loop["cfg"], Worker.here(loop))


@dataclass
class Worker:
    """What a worker's step code needs of Ray Train, and nothing of its plumbing."""

    rank: int
    world: int
    device: torch.device
    use_gpu: bool
    out: Path
    metrics_file: str = "metrics.jsonl"  # the driver's log in ``out`` (fault injection reads it)
    for_driver: dict[str, Any] = field(default_factory=dict)  # rank 0's, sent with its next report

    @classmethod
    def here(cls, loop: dict) -> Worker:
        import ray.train
        import ray.train.torch

        ctx = ray.train.get_context()
        out = Path(loop["out"])
        return cls(ctx.get_world_rank(), ctx.get_world_size(), ray.train.torch.get_device(),
                   loop["use_gpu"], out, loop["metrics_file"])  # fmt: skip

    @property
    def chief(self) -> bool:
        return self.rank == 0

    def ddp(self, model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module]:
        """(the model wrapped for DDP and moved to this worker's device, the module itself)."""
        import ray.train.torch

        wrapped = ray.train.torch.prepare_model(model)
        return wrapped, getattr(wrapped, "module", wrapped)

    def log(self, row: dict) -> None:
        """Rank 0's ``row`` for the run's metrics log; it travels with the next report."""
        if self.chief:
            self.for_driver.setdefault("rows", []).append(row)

    def restore(self, names: list[str]) -> dict[str, Any] | None:
        """The files of the checkpoint Ray Train hands a resumed worker group, or None."""
        import ray.train

        ckpt = ray.train.get_checkpoint()
        return read_checkpoint(ckpt, names) if ckpt else None

    def start_log(self, epoch: int, resumed: bool) -> None:
        """Rank 0 has the log rewound to ``epoch`` (what a lost attempt wrote later goes; 0
        after a restart with no checkpoint) and says where the run resumed."""
        if not self.chief:
            return
        self.for_driver["rewind"] = epoch
        if resumed:
            print(f"resumed from the checkpoint of epoch {epoch}", flush=True)

    def report(self, metrics: dict, files: dict[str, Any] | None = None) -> None:
        """Report ``metrics`` with, from rank 0, a checkpoint of ``files`` (``.pt``:
        ``torch.save``; ``.json``: JSON; a ``Path`` to a folder: the folder, copied). Every
        rank must call it at the same step."""
        import ray.train

        ckpt, d = None, None
        if self.chief and files is not None:
            d = Path(tempfile.mkdtemp())
            for name, obj in files.items():
                if isinstance(obj, Path):
                    shutil.copytree(obj, d / name)
                elif name.endswith(".json"):
                    (d / name).write_text(json.dumps(obj))
                else:
                    torch.save(obj, d / name)
            ckpt = ray.train.Checkpoint.from_directory(str(d))
        if self.for_driver:
            metrics = {**metrics, FOR_DRIVER: self.for_driver}
            self.for_driver = {}
        ray.train.report(metrics, checkpoint=ckpt)
        if d is not None:  # report copied it into the run's storage: the local copy goes
            shutil.rmtree(d, ignore_errors=True)

    def maybe_fail(self, epoch: int, fail_at: int | None, wait_s: float = 60.0) -> None:
        """Fault injection for the resume tests: this worker dies once, at epoch ``fail_at``,
        after the driver has logged the epoch before (or ``wait_s`` passed). Ray Train pops a
        report from the worker before its reply reaches the driver, so a death right after a
        report can lose it, and with it the checkpoint a test expects to resume from."""
        mark = self.out / ".failed_once"
        if not fail_at or epoch != fail_at or mark.exists():
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and logged_through(self.out / self.metrics_file) < epoch:
            time.sleep(0.2)
        mark.touch()
        os._exit(1)

    def agree(self, flag: bool) -> bool:
        """Rank 0's ``flag`` on every rank (they must leave a loop at the same step)."""
        if self.world == 1:
            return flag
        t = torch.tensor([1 if flag else 0])
        torch.distributed.broadcast(t, src=0)
        return bool(t.item())

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` holds on any rank (a step every rank must skip together)."""
        if self.world == 1:
            return flag
        t = torch.tensor([1 if flag else 0])
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return bool(t.item())

    def note_worker_group(self) -> None:
        """Rank 0's placement group id, for ``RunLog`` to note in the run directory: Ray Train
        leaves the group reserved when a Tune trial is killed, and only this id frees it."""
        from ray.util import get_current_placement_group

        pg = get_current_placement_group()
        if self.chief and pg is not None:
            self.for_driver["worker_group"] = pg.id.hex()


def without_cpu_shm_collectives() -> None:
    """On CPU, keep DeepSpeed on gloo's collectives: its shared-memory all-reduce is a C++ op
    JIT-compiled on first use (two compilers racing on a 2-core host for most of a minute) and
    rebuilt whenever another checkout's venv built it last, while the tensors these CPU runs
    reduce are small. Call before DeepSpeed initialises its communication backend."""
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False


def zero_optimiser(model: torch.nn.Module, lr: float, worker: Worker, zero_stage: int,
                   micro_batch: int) -> tuple[Any, torch.optim.Optimizer]:  # fmt: skip
    """(DeepSpeed engine or None, optimiser) over ``model``'s trainable weights: DeepSpeed ZeRO
    when there is more than one worker or a GPU; a single CPU worker takes a plain AdamW
    (DeepSpeed's own optimiser JIT-compiles for a minute on CPU)."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr)
    if worker.world == 1 and not worker.use_gpu:
        return None, opt
    import deepspeed

    if not worker.use_gpu:
        without_cpu_shm_collectives()
    ds_cfg = {
        "train_micro_batch_size_per_gpu": micro_batch,
        "gradient_accumulation_steps": 1,
        "zero_optimization": {"stage": zero_stage},
        "zero_allow_untested_optimizer": True,
        "bf16": {"enabled": bool(worker.use_gpu and torch.cuda.is_bf16_supported())},
    }
    engine, opt, _, _ = deepspeed.initialize(model=model, optimizer=opt, config=ds_cfg)
    return engine, opt


def optimiser_step(engine: Any, opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    if engine is not None:
        engine.backward(loss)
        engine.step()
    else:
        opt.zero_grad()
        loss.backward()
        opt.step()


@dataclass(frozen=True)
class RefLine:
    """A horizontal reference on one panel of ``plot_curves`` (a before/after test figure)."""

    label: str
    panel: int
    y: float
    style: str = "--"  # matplotlib line style
    colour: str = "k"


def plot_curves(rows: list[dict], panels: list[tuple[str, str]], path: Path, title: str = "",
                lines: list[RefLine] = ()) -> None:  # fmt: skip
    """One panel per (metrics key, panel title) over epochs, with ``lines`` drawn across."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.5))
    axes = list(getattr(axes, "flat", [axes]))
    for ax, (key, name) in zip(axes, panels, strict=True):
        ev = [r for r in rows if key in r]
        ax.plot([r["epoch"] for r in ev], [r[key] for r in ev], label=key)
        ax.set(title=f"{title}: {name}" if title else name, xlabel="epoch")
    for ref in lines:
        axes[ref.panel].axhline(ref.y, ls=ref.style, c=ref.colour, label=ref.label)
        axes[ref.panel].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
