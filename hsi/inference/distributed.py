"""Scene prediction sharded over several processes (GPUs, nodes): ``hsi predict --devices N``.

The scene is cut into the same windows as :func:`hsi.inference.predict_scene`'s, and
window ``i`` goes to rank ``i % world_size`` (rank ``r`` takes windows ``r, r + world,
r + 2·world, ...``). Each rank reads, preprocesses and classifies its windows and writes
each window's result to ``<output dir>/.<map name>.<token>.shards/w<i>.npz``; after a
barrier, rank 0 reads the shards in window order into ONE set of outputs (class map and
the optional confidence/probability rasters and quick-look, exactly as ``predict_scene``
writes them: same profile, tags, colour table, georeference; written atomically), then
deletes the shard directory. The map equals the single-process map pixel for pixel.

Why Lightning: the split is what ``Trainer.predict`` does on a distributed strategy — it
injects Lightning's ``UnrepeatedDistributedSampler`` (no padding, rank ``r`` takes items
``r::world``) into a map-style dataset whose items are windows; a
:class:`~lightning.pytorch.callbacks.BasePredictionWriter` (``write_interval="batch"``)
writes each window's result as it is done, so nothing accumulates in memory; and the same
code then runs under the ddp launcher, ``torchrun`` and SLURM (Lightning's cluster
environments), on CPUs (gloo) and GPUs (nccl), one GPU per rank. In predict mode Lightning
does not wrap the model in DistributedDataParallel, so ranks only meet at start-up (the
shard-directory name is broadcast from rank 0) and at the final barrier. Reading, the
preprocessing, the model and the output writing are predict_scene's own pieces
(``hsi.inference.plan._plan_prediction``, ``windows._WindowReader``, ``windows._window_maps``,
``outputs._SceneOutputs``), not copies.

Launching (the output directory must be on a file system every node sees, since rank 0
assembles the shards of all ranks there)::

    # one machine, 4 GPUs: Lightning starts the 3 other processes itself
    hsi predict --ckpt model.ckpt --input scene.tif --output map.tif --devices 4 --accelerator gpu

    # the same with torchrun (--devices/--num-nodes default to torchrun's world)
    torchrun --nproc_per_node 4 -m hsi predict --ckpt model.ckpt --input scene.tif \\
        --output map.tif --accelerator gpu

    # SLURM, 2 nodes × 4 GPUs: one task per GPU; Lightning reads SLURM's environment
    #SBATCH --nodes=2 --ntasks-per-node=4 --gpus-per-node=4
    srun hsi predict --ckpt model.ckpt --input scene.tif --output map.tif \\
        --devices 4 --num-nodes 2 --accelerator gpu

    # CPU processes (gloo), e.g. to use several sockets: --devices 4 --accelerator cpu

From Python (a notebook, tests): ``predict_scene_distributed(..., strategy="ddp_spawn")``
starts the processes with ``torch.multiprocessing`` instead of re-running the script.

If a rank fails, Lightning stops the others; rank 0 removes the shard directory when it
can, but a run killed outright may leave ``.<map name>.<token>.shards/`` behind (it is
never taken for a result: outputs appear only when complete). Shards hold one window each,
uncompressed: the class map's bytes, plus 4 bytes per pixel for ``--confidence`` and
4·K for ``--probabilities``, spread over the run.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
import warnings
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch import nn
from torch.utils.data import DataLoader, Dataset

from hsi.errors import ConfigError, DataError
from hsi.inference.dense import classify_cube
from hsi.inference.outputs import _SceneOutputs
from hsi.inference.plan import _Plan, _plan_prediction
from hsi.inference.scenes import PathLike, Window
from hsi.inference.windows import _window_maps, _WindowReader

__all__ = ["launched_world", "predict_scene_distributed"]

ACCELERATORS = ("auto", "cpu", "gpu")


def launched_world() -> tuple[int, int] | None:
    """``(devices, num_nodes)`` when this process was started by torchrun, else None."""
    try:
        world = int(os.environ["WORLD_SIZE"])
        local = int(os.environ["LOCAL_WORLD_SIZE"])
    except (KeyError, ValueError):
        return None
    if "TORCHELASTIC_RUN_ID" not in os.environ or world <= 1 or local < 1:
        return None
    return local, max(1, world // local)


class _WindowDataset(Dataset):
    """Item ``i``: window ``i`` read, preprocessed and padded (``padded`` None: no data).

    Items past the last window (when there are fewer windows than ranks, so that every
    rank gets one item, as Lightning's sampler requires) are empty.
    """

    def __init__(self, reader: _WindowReader, windows: list[Window], length: int) -> None:
        self.reader, self.windows, self.length = reader, windows, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Any]:
        if index >= len(self.windows):
            return {"index": index, "empty": True}
        padded, core_valid = self.reader.read(self.windows[index])
        return {"index": index, "empty": False, "padded": padded, "core_valid": core_valid}


def _single(items: list[dict[str, Any]]) -> dict[str, Any]:
    """collate_fn of one-window batches: the window's item, its arrays left as numpy."""
    return items[0]


class _ScenePredictor(L.LightningModule):
    """The checkpoint's network applied to one window per predict step."""

    def __init__(
        self,
        net: nn.Module,
        patch: int,
        batch_size: int,
        map_dtype: str,
        confidence: bool,
        probabilities: bool,
    ) -> None:
        super().__init__()
        self.net = net
        self.patch, self.batch_size, self.map_dtype = patch, batch_size, map_dtype
        self.confidence, self.probabilities = confidence, probabilities

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any] | None:
        if batch["empty"]:
            return None
        rank = np.int64(self.global_rank)
        if batch["padded"] is None:
            return {"index": batch["index"], "arrays": {"rank": rank}}
        probs = classify_cube(
            self.net,
            torch.from_numpy(batch["padded"]),
            self.patch,
            self.batch_size,
            self.device,
        )
        classes, conf, pr = _window_maps(
            probs, batch["core_valid"], self.map_dtype, self.confidence, self.probabilities
        )
        arrays = {"rank": rank, "classes": classes}
        if conf is not None:
            arrays["confidence"] = conf
        if pr is not None:
            arrays["probabilities"] = pr
        return {"index": batch["index"], "arrays": arrays}


def _shard_path(shard_dir: Path, index: int) -> Path:
    return shard_dir / f"w{index:09d}.npz"


class _ShardWriter(BasePredictionWriter):
    """Writes each window's result to ``shard_dir`` as it is predicted (one .npz each).

    Every rank proposes a directory name; rank 0's is broadcast in ``setup`` so all ranks
    (and, with ddp_spawn, the launching process, whose proposal rank 0 inherited) agree.
    ``on_predict_end`` is a barrier: when ``Trainer.predict`` returns, all shards exist.
    """

    def __init__(self, output: Path) -> None:
        super().__init__(write_interval="batch")
        self.shard_dir = output.parent / f".{output.name}.{uuid.uuid4().hex[:8]}.shards"

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.shard_dir = Path(trainer.strategy.broadcast(str(self.shard_dir), src=0))
        self.shard_dir.mkdir(parents=True, exist_ok=True)

    def write_on_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        prediction: dict[str, Any] | None,
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        if prediction is None:
            return
        final = _shard_path(self.shard_dir, prediction["index"])
        tmp = final.with_name(final.name + ".partial")
        with open(tmp, "wb") as f:
            np.savez(f, **prediction["arrays"])
        os.replace(tmp, final)

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.strategy.barrier("hsi-predict-shards")


def predict_scene_distributed(
    checkpoint: PathLike,
    inputs: PathLike | Sequence[PathLike],
    output: PathLike,
    *,
    devices: int = 2,
    num_nodes: int = 1,
    accelerator: str = "auto",
    strategy: str = "ddp",
    tile: int = 256,
    batch_size: int = 256,
    probabilities: bool = False,
    confidence: bool = False,
    overwrite: bool = False,
    quicklook: bool = True,
    num_workers: int = 0,
    progress: bool = True,
) -> dict[str, Any] | None:
    """:func:`hsi.inference.predict_scene` over ``devices × num_nodes`` processes.

    Args:
        devices: processes per node (one per GPU with ``accelerator="gpu"``).
        num_nodes: nodes (under SLURM or torchrun, as launched).
        accelerator: ``auto``, ``cpu`` (gloo) or ``gpu`` (nccl).
        strategy: ``ddp`` (the script is re-run for the other local ranks, or they were
            started by torchrun/srun) or ``ddp_spawn`` (``torch.multiprocessing``: for
            notebooks and tests; everything is pickled to the workers).
        num_workers: DataLoader processes reading windows on each rank.
        The others: as for :func:`~hsi.inference.predict_scene`.

    Returns predict_scene's summary (plus ``world_size`` and ``windows_per_rank``) on the
    process that wrote the outputs (global rank 0, or the launching process with
    ``ddp_spawn``), None on the other ranks. The outputs equal predict_scene's with the
    same tile size.
    """
    if devices < 1 or num_nodes < 1:
        raise ConfigError(
            f"--devices and --num-nodes must be at least 1, got {devices}, {num_nodes}"
        )
    if accelerator not in ACCELERATORS:
        raise ConfigError(f"--accelerator {accelerator!r} is not one of {', '.join(ACCELERATORS)}")
    if accelerator == "gpu" and not torch.cuda.is_available():
        raise ConfigError("--accelerator gpu but no CUDA GPU is available; use --accelerator cpu")
    world = devices * num_nodes
    # every rank runs all checks (the same on all), before any output or shard exists
    plan = _plan_prediction(
        checkpoint,
        inputs,
        output,
        tile=tile,
        batch_size=batch_size,
        probabilities=probabilities,
        confidence=confidence,
        overwrite=overwrite,
        quicklook=quicklook,
        device="cpu",  # Lightning moves the network to each rank's device
    )
    want_conf, want_probs = "confidence" in plan.targets, "probabilities" in plan.targets
    module = _ScenePredictor(
        plan.task.net, plan.patch, batch_size, plan.map_dtype, want_conf, want_probs
    )
    dataset = _WindowDataset(plan.reader(), plan.windows, max(len(plan.windows), world))
    loader = DataLoader(
        dataset, batch_size=1, shuffle=False, num_workers=num_workers, collate_fn=_single
    )
    writer = _ShardWriter(plan.out_path)
    trainer = L.Trainer(
        accelerator=accelerator,
        devices=devices,
        num_nodes=num_nodes,
        strategy=strategy,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=progress,
        callbacks=[writer],
        use_distributed_sampler=True,
    )
    start = time.perf_counter()
    try:
        trainer.predict(module, dataloaders=loader, return_predictions=False)
        if not trainer.is_global_zero:
            return None
        seconds = time.perf_counter() - start
        summary, per_rank = _assemble(plan, writer.shard_dir, seconds, start)
    finally:
        if trainer.is_global_zero:
            shutil.rmtree(writer.shard_dir, ignore_errors=True)
    summary["world_size"] = world
    summary["windows_per_rank"] = [per_rank.count(r) for r in range(world)]
    summary["device"] = f"{world} × {trainer.strategy.root_device.type} ({strategy})"
    return summary


def _assemble(
    plan: _Plan, shard_dir: Path, seconds: float, start: float
) -> tuple[dict[str, Any], list[int]]:
    """Rank 0: every window's shard, in window order, into predict_scene's outputs.

    Returns predict_scene's summary and the rank that predicted each window.
    """
    ranks: list[int] = []
    from rasterio.errors import NotGeoreferencedWarning

    missing = [i for i in range(len(plan.windows)) if not _shard_path(shard_dir, i).is_file()]
    if missing:
        raise DataError(
            f"{shard_dir}: no result for {len(missing)} of {len(plan.windows)} windows "
            f"(first: {missing[0]}); a rank failed or the output directory is not shared "
            "by all nodes — use a shared file system for --output"
        )
    with ExitStack() as stack, warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        outputs = _SceneOutputs(plan, stack)
        for index, window in enumerate(plan.windows):
            with np.load(_shard_path(shard_dir, index)) as shard:
                ranks.append(int(shard["rank"]))
                if "classes" not in shard:
                    outputs.write_nodata(window)
                    continue
                outputs.write(
                    window,
                    shard["classes"],
                    shard["confidence"] if outputs.confidence else None,
                    shard["probabilities"] if outputs.probabilities else None,
                )
        outputs.finish()
    return outputs.summary(seconds, time.perf_counter() - start, ""), ranks
