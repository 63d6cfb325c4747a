"""The training loop shared by pretraining and fine-tuning.

One optimizer step = one task (drawn per step from the seed, the same on every rank) over
`batch_size` images: `accumulation` micro-batches of `micro_batch` images on each of the ranks. The loss
is L1(model(degraded), clean) + lambda * contrastive(body tokens); gradients are averaged over ranks by
DDP, clipped to a maximum norm, and applied by Adam at the rate of ipt.train.schedule (warm-up, then
the paper's step decay at epoch milestones or a cosine decay).
Checkpoints record the exact data position, so a killed run resumes where it stopped.

Trainer.run, the recipe: for each epoch, _train_epoch (optimizer steps: _step; their log lines;
a checkpoint every checkpoint_every steps; validation every validate_every steps, if set) and, when the
epoch's data ran out before the step budget, _end_epoch (the next epoch's position; validation unless
validate_every is set); then _finish (the last checkpoint, the final model, and its validation unless
these very weights were just validated).
"""

from __future__ import annotations

import inspect
import itertools
import time
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from ..data import degrade_batch
from ..errors import ConfigError
from ..loaders import make_loader
from ..model import IPT
from ..model.checkpoint import CheckpointError
from . import distributed, state
from .config import TrainConfig
from .contrastive import contrastive_loss
from .schedule import LRSchedule
from .logger import RunLog


class Trainer:
    def __init__(self, config: TrainConfig, data, out, *, model: IPT | None = None, resume: bool = False,
                 device: str | None = None, validate: Callable | None = None, progress: bool | None = None,
                 loader=None):
        """data: TrainingImages (degraded on the fly) or ImagePairs. model: start from these weights
        (fine-tuning); default a new IPT(config.tasks, config.model). validate(model, epoch) -> metrics
        (or validate(model, epoch, step)), run on rank 0 after every epoch, or every validate_every steps.
        loader: use this instead of building one from config.loader
        (anything with .tasks, len() and .epoch(epoch, start), e.g. synthetic batches for benchmarks).

        In a job of several ranks (torchrun), an error on any rank ends every rank: the failing rank raises
        its error, the others PeerFailedError naming it, and a rank that does not end by itself within
        seconds (blocked in a collective) is ended by its watchdog (ipt.train.watchdog)."""
        self.config, self.out, self.validate, self.progress = config, Path(out), validate, progress
        # A validator may also take the step (validation every validate_every steps says which).
        self._validate_takes_step = validate is not None and "step" in inspect.signature(validate).parameters
        self.dist = distributed.join(config, device)
        # Everything up to the first collective is agreed: if it fails on one rank, it fails on all,
        # instead of leaving the others blocked in DDP's first broadcast.
        with self.dist.stage("start-up"):
            self._start(config, data, model, resume, loader)

    def _start(self, config: TrainConfig, data, model, resume: bool, loader) -> None:
        world = self.dist.world
        self.micro_batch = config.micro_batch or config.batch_size // world
        if self.micro_batch < 1 or config.batch_size % (self.micro_batch * world):
            raise ConfigError(f"batch_size {config.batch_size} must be a multiple of micro_batch {self.micro_batch} "
                             f"x {world} ranks")
        self.accumulation = config.batch_size // (self.micro_batch * world)

        if config.deterministic:
            torch.use_deterministic_algorithms(True)
        if self.dist.device.type == "cuda" and config.tf32:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        torch.manual_seed(config.seed)
        self.model = (model or IPT(config.tasks, config.model)).to(self.dist.device)
        self.optimizer = torch.optim.Adam([p for p in self.model.parameters() if p.requires_grad], lr=config.lr,
                                          betas=tuple(config.betas), weight_decay=config.weight_decay)
        self.position = state.Position(world=world)

        if self.dist.is_main:
            state.check_writable(self.out)
        if resume:
            self._resume()
        self.loader = loader or make_loader(
            config.loader, data, self.model.task_names, self.micro_batch, config.seed,
            patch_size=self.model.config.patch_size, workers=config.workers, device=self.dist.device,
            repeat=config.repeat, last_batch="drop", rank=self.dist.rank, world=world, task_group=self.accumulation)
        self.steps_per_epoch = len(self.loader) // self.accumulation
        if self.steps_per_epoch == 0:
            raise ConfigError(f"the data ({len(self.loader)} batches of {self.micro_batch}) does not fill one step of "
                             f"{config.batch_size} images over {world} rank(s); use a smaller batch or a larger repeat")
        self.total_steps = config.steps or config.epochs * self.steps_per_epoch
        self.scheduler = LRSchedule(config, self.total_steps)

    def _resume(self) -> None:
        checkpoint, path = state.load_latest(self.out, map_location=self.dist.device)
        saved = checkpoint["model"]
        if saved["tasks"] != self.model.task_names or saved["config"] != self.model.config.to_dict():
            raise CheckpointError(f"{path}: holds a model with tasks {saved['tasks']} and config {saved['config']}, "
                                  f"not this run's ({self.model.task_names}, {self.model.config.to_dict()})")
        self.model.load_state_dict(saved["state_dict"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        state.set_rng_states(checkpoint["rng"])
        self.position = state.Position(**checkpoint["position"])
        if self.position.world != self.dist.world:
            warnings.warn(f"resuming on {self.dist.world} ranks a run saved on {self.position.world}: the shards "
                          f"differ, so epoch {self.position.epoch} restarts from its first batch", RuntimeWarning)
            self.position.next_batch, self.position.world = 0, self.dist.world
        if self.dist.is_main:
            print(f"resumed from {path} (step {self.position.step}, epoch {self.position.epoch})", flush=True)

    def _save(self) -> Path | None:
        """Writes a checkpoint on rank 0 while the others wait (on the store, so a slow write is not a
        collective timeout); if the write fails, every rank stops (run()'s guard posts the error)."""
        path = None
        if self.dist.is_main:
            with self.dist.critical():
                path = state.save(self.out, self.model, self.optimizer, self.scheduler, self.position,
                                  self.config.to_dict(), self.config.keep_checkpoints)
        self.dist.barrier("checkpoint")
        self._saved_at = self.position.step
        return path

    def _validate(self, epoch: int) -> None:
        """validate(model, epoch) on rank 0, if the run has a validator; the others go on to the barrier
        that follows, where they wait for it."""
        if self.validate is not None and self.dist.is_main:
            self.validate(self.model, epoch, **({"step": self.position.step} if self._validate_takes_step else {}))
        self._validated_at = self.position.step

    def _forward_fn(self):
        model = self.model
        if self.dist.world > 1:
            device_ids = [self.dist.device.index] if self.dist.device.type == "cuda" else None
            # Every step trains one task: the other heads and tails get no gradient.
            model = torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids,
                                                              find_unused_parameters=True)
        forward = torch.compile(model) if self.config.compile else model
        return model, forward

    def _autocast(self):
        amp = self.config.amp
        use_bf16 = amp == "bf16" or (amp == "auto" and self.dist.device.type == "cuda")
        return torch.autocast(self.dist.device.type, dtype=torch.bfloat16) if use_bf16 else nullcontext()

    def _losses(self, forward, batch):
        lr_images, target = degrade_batch(batch, self.loader.tasks, self.config.seed)
        with self._autocast():
            output, tokens = forward(lr_images, batch.task, return_features=True)
        l1 = F.l1_loss(output.float(), target)
        if self.config.contrastive_weight > 0:
            contrastive = contrastive_loss(tokens, self.config.temperature, self.config.contrastive_chunk)
        else:
            contrastive = torch.zeros((), device=l1.device)
        return l1, contrastive

    def _step(self, wrapped, forward, group) -> tuple[float, float]:
        """One optimizer step over a group of micro-batches; returns their mean (l1, contrastive) losses."""
        cfg = self.config
        self.scheduler.apply(self.optimizer, self.position.step, self.position.epoch)
        self.optimizer.zero_grad(set_to_none=True)
        losses = torch.zeros(2, device=self.dist.device)  # (l1, contrastive), summed on the device
        for j, batch in enumerate(group):
            last = j == len(group) - 1
            sync = nullcontext() if last or wrapped is self.model else wrapped.no_sync()
            with sync:
                l1, contrastive = self._losses(forward, batch)
                ((l1 + cfg.contrastive_weight * contrastive) / self.accumulation).backward()
            losses += torch.stack([l1.detach(), contrastive.detach()]) / self.accumulation
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.optimizer.step()
        # The one host sync of a step: it reads the losses and ends the step's GPU work, so the compute
        # time the log shows is honest.
        l1_sum, contrastive_sum = losses.tolist()
        return l1_sum, contrastive_sum

    def run(self) -> dict:
        """Trains to the step or epoch budget, then saves (and validates) the final weights. An error on
        any rank ends every rank (with that error)."""
        cfg, pos = self.config, self.position
        self._saved_at = self._validated_at = None  # the steps whose weights were last saved / validated
        self._first_loss = self._last_loss = None
        self._log = None
        try:
            # The guard sits in the frame that holds the epoch's batch iterator: it posts an error before
            # that loader (DataLoader workers take seconds to stop) is torn down, so the other ranks hear
            # of it at once.
            with self.dist.guard():
                self._log = RunLog(self.out, self.model.task_names, self.total_steps, pos.step, cfg.log_every,
                                   enabled=self.dist.is_main, progress=self.progress)
                wrapped, forward = self._forward_fn()
                while pos.step < self.total_steps and pos.epoch < cfg.epochs:
                    batches = iter(self.loader.epoch(pos.epoch, start=pos.next_batch))
                    if not self._train_epoch(batches, wrapped, forward):
                        break  # the step budget is spent
                    self._end_epoch()
                self._finish()
        finally:
            if self._log is not None:
                self._log.close()
        return {"steps": pos.step, "epoch": pos.epoch, "first_loss": self._first_loss, "last_loss": self._last_loss,
                "model": str(self.out / "model.safetensors"), "checkpoints": [str(p) for p in state.checkpoints(self.out)]}

    def _train_epoch(self, batches, wrapped, forward) -> bool:
        """Optimizer steps over the rest of an epoch, a checkpoint every checkpoint_every steps. True when
        the epoch's batches ran out (its last, incomplete group of micro-batches is dropped), False when
        the step budget ran out first."""
        pos = self.position
        while pos.step < self.total_steps:
            waited = time.perf_counter()
            group = list(itertools.islice(batches, self.accumulation))
            if len(group) < self.accumulation:
                return True
            started = time.perf_counter()
            l1, contrastive = self._step(wrapped, forward, group)
            computed = time.perf_counter()
            pos.step += 1
            pos.next_batch += self.accumulation
            self._log_step(group, l1, contrastive, data_wait=started - waited, compute=computed - started)
            if pos.step % self.config.checkpoint_every == 0:
                self._save()
            if self.config.validate_every and pos.step % self.config.validate_every == 0:
                self._validate(pos.epoch)
                self.dist.barrier("validation")  # on the store, as at an epoch's end
        return False

    def _log_step(self, group, l1: float, contrastive: float, data_wait: float, compute: float) -> None:
        loss = l1 + self.config.contrastive_weight * contrastive
        self._first_loss = loss if self._first_loss is None else self._first_loss
        self._last_loss = loss
        self._log.step(step=self.position.step, epoch=self.position.epoch, lr=self.optimizer.param_groups[0]["lr"],
                       loss=loss, l1=l1, contrastive=contrastive, task=self.model.task_names[group[0].task],
                       samples=sum(len(b.sample_ids) for b in group) * self.dist.world,
                       data_wait=data_wait, compute=compute)

    def _end_epoch(self) -> None:
        """After an epoch's last step: the next epoch's position (the learning rate follows it), then validation."""
        pos = self.position
        pos.epoch, pos.next_batch = pos.epoch + 1, 0
        if not self.config.validate_every:  # else validation follows the steps (_train_epoch)
            self._validate(pos.epoch - 1)
        self.dist.barrier("epoch")  # on the store: rank 0's validation may outlast dist_timeout

    def _finish(self) -> None:
        """The last checkpoint and the final model, validated unless the last epoch's end already saw
        these very weights."""
        step = self.position.step
        if self._saved_at != step:
            self._save()
        if self.dist.is_main:
            with self.dist.critical():
                self.model.save(self.out / "model.safetensors", step=step)
        if self._validated_at != step:
            self._validate(self.position.epoch)
        self.dist.barrier("end")
