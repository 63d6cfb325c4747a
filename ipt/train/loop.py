"""The training loop shared by pretraining and fine-tuning.

One optimizer step = one task (drawn per step from the seed, the same on every rank) over
`batch_size` images: `accumulation` micro-batches of `micro_batch` images on each of the ranks. The loss
is the model family's (ipt.families): for IPT L1(model(degraded), clean) + lambda * contrastive(body
tokens), for MPRNet Charbonnier + edge loss over its three stage outputs; gradients are averaged over
ranks by DDP, clipped to a maximum norm, and applied by Adam at the rate of ipt.train.schedule (warm-up,
then the paper's step decay at epoch milestones or a cosine decay). The forward pass runs in the precision
of ipt.train.precision (float32, or bfloat16 or float16 autocast; float16 with loss scaling, and a fallback
to float32 should its forward pass overflow).
Checkpoints record the exact data position, so a killed run resumes where it stopped.

Faults (issue 12): a run owns its output folder (ipt.files.OutputLock: a second run there is refused);
a step whose loss or gradients are not finite on any rank is skipped on every rank, and too many in a
row stop the run (no checkpoint is written meanwhile, and none with non-finite weights ever) -- except
the steps whose float16 gradients overflowed at too high a loss scale, skipped while the scale comes down; SIGTERM
and SIGINT (ipt.preemption) stop every rank at the same step after a checkpoint; a resumed run's
settings are compared with its checkpoint's (ipt.train.config.changed_settings).

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

from ..data import DataLayoutError, degrade_batch
from ..errors import ConfigError, IPTError
from ..families import describe_family, get_family
from ..files import OutputLock
from ..loaders import make_loader
from ..model.checkpoint import DEFAULT_FAMILY, CheckpointError
from ..preemption import StopRequests, signal_name
from . import distributed, precision, state
from .config import TrainConfig, changed_settings
from .schedule import LRSchedule
from .logger import RunLog


class DivergedError(IPTError, FloatingPointError):
    """Training stopped: the loss or the gradients were not finite for too many steps in a row."""


# The outcomes of an optimizer step (Trainer._step).
APPLIED = "applied"
SCALER_SKIPPED = "skipped by the loss scaler"  # float16 gradients overflowed at too high a scale: lowered, not counted
NOT_FINITE = "not finite"  # counted towards max_nonfinite_steps


class Trainer:
    def __init__(self, config: TrainConfig, data, out, *, model: torch.nn.Module | None = None, resume: bool = False,
                 device: str | None = None, validate: Callable | None = None, progress: bool | None = None,
                 loader=None, allow_config_changes: bool = False):
        """data: TrainingImages (degraded on the fly) or ImagePairs. model: start from these weights
        (fine-tuning), a model of config.family; default a new one of config.tasks and config.model
        (IPT(config.tasks, config.model) for IPT). validate(model, epoch) -> metrics
        (or validate(model, epoch, step)), run on rank 0 after every epoch, or every validate_every steps.
        loader: use this instead of building one from config.loader
        (anything with .tasks, len() and .epoch(epoch, start), e.g. synthetic batches for benchmarks).
        resume: continue the run in `out` from its last checkpoint -- with the checkpoint's settings: a
        changed recipe setting (lr, betas, ...) is refused unless allow_config_changes, and settings that
        decide the data (batch_size, seed, ...) are refused always. Without resume, `out` must not hold
        checkpoints. The run owns `out` from here until run() ends: another Trainer there is refused.

        In a job of several ranks (torchrun), an error on any rank ends every rank: the failing rank raises
        its error, the others PeerFailedError naming it, and a rank that does not end by itself within
        seconds (blocked in a collective) is ended by its watchdog (ipt.train.watchdog)."""
        self.config, self.out, self.validate, self.progress = config, Path(out), validate, progress
        # A validator may also take the step (validation every validate_every steps says which).
        self._validate_takes_step = validate is not None and "step" in inspect.signature(validate).parameters
        self.allow_config_changes = allow_config_changes
        self.dist = distributed.join(config, device)
        self._lock = OutputLock(self.out)
        # Everything up to the first collective is agreed: if it fails on one rank, it fails on all,
        # instead of leaving the others blocked in DDP's first broadcast.
        try:
            with self.dist.stage("start-up"):
                self._start(config, data, model, resume, loader)
        except BaseException:
            self._lock.release()
            raise

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
        self.family = get_family(config.family)
        if model is not None and getattr(model, "family", DEFAULT_FAMILY) != self.family.name:
            raise ConfigError(f"the model given is an {describe_family(model.family)} model but the config trains the "
                              f"{config.family!r} family: set family={model.family!r}")
        self.model = (model or self.family.build(config.tasks, config.model)).to(self.dist.device)
        self.optimizer = torch.optim.Adam([p for p in self.model.parameters() if p.requires_grad], lr=config.lr,
                                          betas=tuple(config.betas), weight_decay=config.weight_decay)
        self.position = state.Position(world=world)
        self._set_precision(precision.for_device(config.amp, self.dist.device, self.family))

        if self.dist.is_main:
            state.check_writable(self.out)
            self._lock.acquire()  # rank 0 owns `out` for the job (the other ranks write nothing there)
            if not resume and state.checkpoints(self.out):
                raise ConfigError(f"{self.out} already holds checkpoints of a run: continue it with --resume "
                                  "(resume=True), or choose another output folder")
        if resume:
            self._resume()
        if self.precision.note and self.dist.is_main:
            print(self.precision.note, flush=True)
        self.loader = loader or make_loader(
            config.loader, data, self.model.task_names, self.micro_batch, config.seed,
            patch_size=self.family.train_crop(self.model.config, config), workers=config.workers, device=self.dist.device,
            repeat=config.repeat, last_batch="drop", rank=self.dist.rank, world=world, task_group=self.accumulation)
        self.steps_per_epoch = len(self.loader) // self.accumulation
        if self.steps_per_epoch == 0:
            raise ConfigError(f"the data ({len(self.loader)} batches of {self.micro_batch}) does not fill one step of "
                             f"{config.batch_size} images over {world} rank(s); use a smaller batch or a larger repeat")
        self.total_steps = config.steps or config.epochs * self.steps_per_epoch
        self.scheduler = LRSchedule(config, self.total_steps, self.steps_per_epoch)

    def _resume(self) -> None:
        checkpoint, path = self._agreed_checkpoint()
        saved = checkpoint["model"]
        held = saved.get("family", DEFAULT_FAMILY)
        if (held != self.model.family or saved["tasks"] != self.model.task_names
                or saved["config"] != self.model.config.to_dict()):
            raise CheckpointError(f"{path}: holds an {describe_family(held)} model with tasks {saved['tasks']} and config "
                                  f"{saved['config']}, not this run's ({describe_family(self.model.family)}, "
                                  f"{self.model.task_names}, {self.model.config.to_dict()})")
        self._check_settings(checkpoint.get("config", {}), path)
        if self.dist.is_main:
            state.set_aside_newer(self.out, path)
        self.model.load_state_dict(saved["state_dict"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        for group in self.optimizer.param_groups:  # the config says (the rate: LRSchedule, every step)
            group["betas"], group["weight_decay"] = tuple(self.config.betas), self.config.weight_decay
        state.set_rng_states(checkpoint["rng"])
        saved_precision = checkpoint.get("precision")  # absent from checkpoints of before loss scaling
        self._set_precision(precision.on_resume(self.precision, saved_precision),
                            (saved_precision or {}).get("scaler"))
        self.position = state.Position(**checkpoint["position"])
        if self.position.world != self.dist.world:
            warnings.warn(f"resuming on {self.dist.world} ranks a run saved on {self.position.world}: the shards "
                          f"differ, so epoch {self.position.epoch} restarts from its first batch", RuntimeWarning)
            self.position.next_batch, self.position.world = 0, self.dist.world
        if self.dist.is_main:
            print(f"resumed from {path} (step {self.position.step}, epoch {self.position.epoch})", flush=True)

    def _agreed_checkpoint(self) -> tuple[dict, Path]:
        """The newest readable checkpoint as rank 0 sees it, and loaded by every rank: ranks on other
        machines may see the shared folder late (NFS), and ranks that resumed different steps would go on
        in different states (DDP keeps only the weights in step)."""
        if self.dist.world == 1:
            return state.load_latest(self.out, map_location=self.dist.device)
        chosen = None
        if self.dist.is_main:
            chosen = state.load_latest(self.out, map_location=self.dist.device)
        step = self.dist.most(torch.tensor([chosen[0]["position"]["step"] if chosen else -1], device=self.dist.device))
        return chosen or state.load_step(self.out, int(step.item()), map_location=self.dist.device)

    def _check_settings(self, saved: dict, path: Path) -> None:
        """A resumed run keeps its settings: those that decide the data may never change, the recipe only
        when the caller allows it (then applied), the operational ones (how long, how often) freely."""
        changes = changed_settings(saved, self.config)
        if changes["fixed"]:
            raise ConfigError(f"{path}: {', '.join(changes['fixed'])}: these decide which crops each step trains on "
                              "and cannot change within a run; start a new run in another output folder "
                              "(fine-tuning can start from this checkpoint)")
        if changes["recipe"] and not self.allow_config_changes:
            raise ConfigError(f"{path}: the run was started with other settings ({', '.join(changes['recipe'])}): "
                              "resume with the run's own (leave those options out), or pass "
                              "--allow-config-changes to apply the new ones")
        applied = changes["recipe"] + changes["operational"]
        if applied and self.dist.is_main:
            print(f"resuming with changed settings: {', '.join(applied)}", flush=True)

    def _save(self) -> Path | None:
        """Writes a checkpoint on rank 0 while the others wait (on the store, so a slow write is not a
        collective timeout); if the write fails, every rank stops (run()'s guard posts the error)."""
        path = None
        if self.dist.is_main:
            with self.dist.critical():
                path = state.save(self.out, self.model, self.optimizer, self.scheduler, self.position,
                                  self.config.to_dict(), self.config.keep_checkpoints,
                                  precision=precision.checkpoint_state(self.precision, self.scaler))
        self.dist.barrier("checkpoint")
        self._saved_at, self._checkpoint_due = self.position.step, False
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
            # IPT trains one task per step: the other heads and tails get no gradient (the family says).
            model = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=device_ids, find_unused_parameters=self.family.find_unused_parameters)
        forward = torch.compile(model) if self.config.compile else model
        return model, forward

    def _set_precision(self, chosen: precision.Precision, scaler_state: dict | None = None) -> None:
        """Trains in `chosen` from here, with a new loss scaler where it scales (in `scaler_state`, a resumed
        run's, if given)."""
        self.precision, self.scaler = chosen, chosen.scaler(self.dist.device.type)
        if self.scaler is not None and scaler_state:
            self.scaler.load_state_dict(scaler_state)

    def _autocast(self):
        return self.precision.autocast(self.dist.device.type)

    def _losses(self, forward, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(total loss, its terms in family.loss_names' order) of one micro-batch: the family's loss."""
        inputs, target = degrade_batch(batch, self.loader.tasks, self.config.seed)
        return self.family.losses(forward, inputs, target, self.loader.tasks[batch.task], batch.task, self.config,
                                  self._autocast())

    def _step(self, wrapped, forward, group, stop: StopRequests) -> tuple[list[float], str, bool]:
        """One optimizer step over a group of micro-batches. Returns their mean losses (the total, then
        the family's terms), the outcome (APPLIED; SCALER_SKIPPED: float16 gradients overflowed at too high a
        loss scale; NOT_FINITE: a rank's loss or the gradients were not finite -- skipped, as on every rank)
        and whether any rank was asked to stop."""
        self.scheduler.apply(self.optimizer, self.position.step, self.position.epoch)
        losses, norm = self._forward_backward(wrapped, forward, group)
        # What every rank must agree on before the step: a stop signal anywhere, the last batch index (ranks
        # that lost different batches would no longer train the same step: see _check_aligned), and whether
        # the loss is finite everywhere and the gradients (already averaged by DDP, the same on all) are.
        # Integers, which every backend and device reduces (MPS has no float64).
        index = group[-1].index
        flags = torch.tensor([stop.signum is not None, index, -index, 0, 0], dtype=torch.int64, device=self.dist.device)
        flags[3:] = self._nonfinite(losses, norm)
        flags = self.dist.most(flags)
        # The host sync of a step: it reads the verdicts and the losses, and ends the step's GPU work, so
        # the compute time the log shows is honest.
        stopping, last_max, minus_last_min, bad_loss, bad_grads = flags.tolist()
        self._check_aligned(last_max, -minus_last_min)
        if bad_loss and self.precision.dtype == torch.float16:  # every rank: the flag is agreed
            losses, bad_loss, bad_grads = self._retry_in_float32(wrapped, forward, group)
        return losses.tolist(), self._apply(bool(bad_loss), bool(bad_grads)), bool(stopping)

    def _forward_backward(self, wrapped, forward, group) -> tuple[torch.Tensor, torch.Tensor]:
        """The gradients of a group of micro-batches, in the run's precision (summed over the group, averaged
        over ranks by DDP at the last one; unscaled), clipped. Returns the group's mean losses, summed on the
        device (the total, then the family's terms), and the gradients' norm before clipping."""
        self.optimizer.zero_grad(set_to_none=True)
        losses = torch.zeros(1 + len(self.family.loss_names), device=self.dist.device)
        for j, batch in enumerate(group):
            last = j == len(group) - 1
            sync = nullcontext() if last or wrapped is self.model else wrapped.no_sync()
            with sync:
                total, terms = self._losses(forward, batch)
                loss = total / self.accumulation
                (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
            losses += torch.cat([total.detach()[None], terms.detach().float()]) / self.accumulation
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)  # so that clipping and the norm see the true gradients
        return losses, self._grad_norm()

    @staticmethod
    def _nonfinite(losses: torch.Tensor, norm: torch.Tensor) -> torch.Tensor:
        """[loss not finite, gradients not finite], as int64 flags."""
        return torch.stack([~torch.isfinite(losses).all(), ~torch.isfinite(norm)]).long()

    def _retry_in_float32(self, wrapped, forward, group) -> tuple[torch.Tensor, int, int]:
        """The step again in float32, after its loss was not finite in float16 on some rank: if float32's
        loss and gradients are finite, float16 overflowed in the forward pass (loss scaling cannot help
        there), and the run trains in float32 from here on. Else the step is as non-finite as it was, and
        the run stays in float16. Returns what _step's agreement found: (losses, bad_loss, bad_grads)."""
        in_float16 = self.precision, self.scaler
        self.precision, self.scaler = precision.FLOAT32_FALLBACK, None
        losses, norm = self._forward_backward(wrapped, forward, group)
        bad_loss, bad_grads = self.dist.most(self._nonfinite(losses, norm)).tolist()
        if bad_loss or bad_grads:
            self.precision, self.scaler = in_float16  # the scaler backs off as for any non-finite float16 step
        elif self.dist.is_main:
            print(f"step {self.position.step + 1}: float16 overflowed in the forward pass (loss not finite in "
                  "float16, finite in float32): training in float32 from here", flush=True)
        return losses, bad_loss, bad_grads

    def _apply(self, bad_loss: bool, bad_grads: bool) -> str:
        """The optimizer step, unless the agreed verdicts say the loss or the gradients are not finite; the
        loss scale's update (lowered after an overflow, raised after a long run of good steps). Returns the
        step's outcome."""
        if not (bad_loss or bad_grads):
            outcome = APPLIED
            # Not scaler.step(): the gradients are unscaled already (_forward_backward) and agreed finite,
            # and its own inf check would read the device once more each step.
            self.optimizer.step()
        elif self._scaler_overflow(bad_loss, bad_grads):
            outcome = SCALER_SKIPPED
        else:
            outcome = NOT_FINITE
        if self.scaler is not None:
            self.scaler.update()  # after every step, skipped ones too: that is how the scale backs off
        return outcome

    def _scaler_overflow(self, bad_loss: bool, bad_grads: bool) -> bool:
        """Whether a skipped step is the loss scaler's doing: a finite loss whose scaled float16 gradients
        overflowed. Not when the scale had already fallen below 1: gradients that overflow unscaled are
        not finite in their own right."""
        return self.scaler is not None and not bad_loss and bad_grads and self.scaler.get_scale() >= 1.0

    def _grad_norm(self) -> torch.Tensor:
        """The gradients' total 2-norm, clipped to grad_clip when that is set (the norm before clipping)."""
        params = [p for p in self.model.parameters() if p.grad is not None]
        if self.config.grad_clip > 0:
            return torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip)
        if not params:
            return torch.zeros((), device=self.dist.device)
        return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad.detach()) for p in params]))

    def run(self) -> dict:
        """Trains to the step or epoch budget, then saves (and validates) the final weights. An error on
        any rank ends every rank (with that error). Stopped by SIGTERM or SIGINT, it writes a checkpoint
        at the step reached and returns early: the summary's "stopped_by" names the signal (else None)."""
        cfg, pos = self.config, self.position
        self._saved_at = self._validated_at = None  # the steps whose weights were last saved / validated
        self._first_loss = self._last_loss = None
        self._nonfinite_streak = 0  # skipped (non-finite) steps in a row
        self._checkpoint_due = False  # one was postponed during such a streak: written at the next good step
        self.stopped_by = None
        self._log = None
        try:
            if self._finished():
                return self._summary()
            # The guard sits in the frame that holds the epoch's batch iterator: it posts an error before
            # that loader (DataLoader workers take seconds to stop) is torn down, so the other ranks hear
            # of it at once.
            with StopRequests() as stop, self.dist.guard():
                self._log = RunLog(self.out, self.model.task_names, self.total_steps, pos.step, cfg.log_every,
                                   enabled=self.dist.is_main, progress=self.progress,
                                   loss_names=self.family.loss_names)
                wrapped, forward = self._forward_fn()
                while pos.step < self.total_steps and pos.epoch < cfg.epochs:
                    first_batch = pos.next_batch
                    batches = iter(self.loader.epoch(pos.epoch, start=first_batch))
                    ended = self._train_epoch(batches, wrapped, forward, stop, first_batch)
                    if ended != "epoch":
                        break  # the step budget is spent, or a signal stopped the run
                    if first_batch == 0 and self._steps_this_epoch == 0:
                        raise DataLayoutError(self._no_data_message())
                    self._end_epoch()
                if self.stopped_by is None:
                    self._finish()
        finally:
            if self._log is not None:
                self._log.close()
            self._lock.release()
        return self._summary()

    def _summary(self) -> dict:
        pos = self.position
        return {"steps": pos.step, "epoch": pos.epoch, "first_loss": self._first_loss, "last_loss": self._last_loss,
                "model": str(self.out / "model.safetensors"), "checkpoints": [str(p) for p in state.checkpoints(self.out)],
                "stopped_by": self.stopped_by}

    def _finished(self) -> bool:
        """Whether a resumed run had already reached its budget. Its final model is written if the end of
        the run was cut short before that; otherwise there is nothing to do."""
        pos = self.position
        if pos.step < self.total_steps and pos.epoch < self.config.epochs:
            return False
        if self.dist.is_main:
            print(f"the run in {self.out} already finished (step {pos.step} of {self.total_steps}, epoch {pos.epoch}): "
                  "nothing to train; raise --steps or --epochs to train further", flush=True)
        # Rank 0's view decides (ranks on other machines may see the shared folder late), and every rank
        # takes part in _finish's barriers or none does.
        missing = torch.tensor([self.dist.is_main and not (self.out / "model.safetensors").is_file()],
                               dtype=torch.int64, device=self.dist.device)
        if self.dist.most(missing).item():
            self._saved_at = pos.step  # the checkpoint just loaded
            with self.dist.guard():
                self._finish()
        return True

    def _no_data_message(self) -> str:
        bad = sorted(getattr(self.loader, "bad_files", ()))
        lost = f"; {len(bad)} files could not be read (e.g. {bad[0]})" if bad else ""
        return (f"epoch {self.position.epoch} gave no complete step of {self.config.batch_size} images: the images of "
                f"the data set are gone or unreadable{lost}")

    def _check_aligned(self, last_max: int, last_min: int) -> None:
        """Ranks train the same plan batches in lockstep (each its shard of them). A loader drops a batch
        whose every image is gone (files deleted during the epoch): one rank alone doing so would pair its
        next batches with the others' earlier ones, so the job stops with the cause instead."""
        if last_max != last_min:
            raise DataLayoutError(self._out_of_step(f"step {self.position.step + 1} (batches {last_min} and {last_max})"))

    def _out_of_step(self, where: str) -> str:
        return (f"the ranks lost step with each other at {where}: a rank found every image of a batch gone (files "
                "deleted during training?); --resume continues from the last checkpoint without the missing files")

    def _train_epoch(self, batches, wrapped, forward, stop: StopRequests, first_batch: int) -> str:
        """Optimizer steps over the rest of an epoch, a checkpoint every checkpoint_every steps. Returns
        'epoch' when the epoch's batches ran out (its last, incomplete group of micro-batches is dropped),
        'budget' when the step budget ran out first, 'stopped' when a signal stopped the run (after a
        checkpoint)."""
        pos, cfg = self.position, self.config
        self._steps_this_epoch = 0
        while pos.step < self.total_steps:
            waited = time.perf_counter()
            group = list(itertools.islice(batches, self.accumulation))
            if len(group) < self.accumulation:
                full_groups = (len(self.loader) - first_batch) // self.accumulation
                if self.dist.world > 1 and self._steps_this_epoch < full_groups:  # the others step on
                    raise DataLayoutError(self._out_of_step(f"the end of epoch {pos.epoch}"))
                return "epoch"
            started = time.perf_counter()
            losses, outcome, stopping = self._step(wrapped, forward, group, stop)
            computed = time.perf_counter()
            pos.step += 1
            pos.next_batch = group[-1].index + 1  # a loader may have dropped a batch whose files are all gone
            self._steps_this_epoch += 1
            self._count_nonfinite(outcome)
            self._log_step(group, losses, data_wait=started - waited, compute=computed - started)
            if pos.step % cfg.checkpoint_every == 0 or self._checkpoint_due:
                self._save_unless_diverging()
            if cfg.validate_every and pos.step % cfg.validate_every == 0:
                self._validate(pos.epoch)
                self.dist.barrier("validation")  # on the store, as at an epoch's end
            if stopping and pos.step < self.total_steps:
                self._stop(stop)
                return "stopped"
        return "budget"

    def _count_nonfinite(self, outcome: str) -> None:
        """Counts the non-finite steps in a row (too many: DivergedError). A step the loss scaler skipped
        neither counts nor ends a streak: it says nothing about the weights, which it left as they were."""
        if outcome == APPLIED:
            self._nonfinite_streak = 0
            return
        if outcome == SCALER_SKIPPED:
            if self.dist.is_main:
                print(f"step {self.position.step}: float16 gradients overflowed: step skipped by the loss scaler, "
                      f"scale lowered to {self.scaler.get_scale():g}", flush=True)
            return
        self._nonfinite_streak += 1
        limit, step = self.config.max_nonfinite_steps, self.position.step
        lr = self.optimizer.param_groups[0]["lr"]
        if self._nonfinite_streak > limit:
            raise self._diverged()
        if self.dist.is_main:
            print(f"step {step}: the loss or the gradients are not finite (lr {lr:.3g}); step skipped "
                  f"({self._nonfinite_streak} in a row, at most {limit})", flush=True)

    def _diverged(self) -> DivergedError:
        last = state.checkpoints(self.out)
        where = f"the last checkpoint, {last[-1]}, was written before" if last else "no checkpoint was written"
        return DivergedError(f"the loss or the gradients were not finite for the last {self._nonfinite_streak} steps "
                             f"(up to step {self.position.step}, lr {self.optimizer.param_groups[0]['lr']:.3g}): the "
                             f"run diverged; {where}. Lower --lr (or use warm-up, gradient clipping) and start again, "
                             "or --resume from a checkpoint")

    def _save_unless_diverging(self) -> None:
        """A checkpoint, unless the last steps were skipped as non-finite: weights that just produced
        them are suspect, and the rotation would push the good checkpoints out."""
        if self._nonfinite_streak:
            if self.dist.is_main and not self._checkpoint_due:
                print(f"step {self.position.step}: checkpoint postponed while steps are not finite", flush=True)
            self._checkpoint_due = True
            return
        self._save()

    def _stop(self, stop: StopRequests) -> None:
        """Ends the run early, on a signal: a checkpoint at this step (every rank stops here together)."""
        self.stopped_by = signal_name(stop.signum) if stop.signum is not None else "a signal to another rank"
        if self._saved_at != self.position.step:
            self._save_unless_diverging()
        if self.dist.is_main:
            last = state.checkpoints(self.out)
            print(f"stopped by {self.stopped_by} at step {self.position.step}; "
                  f"{f'last checkpoint {last[-1]}' if last else 'no checkpoint'}", flush=True)

    def _log_step(self, group, losses: list[float], data_wait: float, compute: float) -> None:
        loss, *terms = losses
        self._first_loss = loss if self._first_loss is None else self._first_loss
        self._last_loss = loss
        self._log.step(step=self.position.step, epoch=self.position.epoch, lr=self.optimizer.param_groups[0]["lr"],
                       loss=loss, terms=dict(zip(self.family.loss_names, terms)),
                       task=self.model.task_names[group[0].task],
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
        if self._nonfinite_streak and self.dist.is_main:  # within max_nonfinite_steps: a blip, not divergence
            print(f"the last {self._nonfinite_streak} steps were skipped as not finite: the final weights are those "
                  f"of step {step - self._nonfinite_streak}", flush=True)
        if self._saved_at != step:
            self._save()
        if self.dist.is_main:
            state.check_finite(self.model, f"the final model of step {step}")
            with self.dist.critical():
                self.model.save(self.out / "model.safetensors", step=step)
        if self._validated_at != step:
            self._validate(self.position.epoch)
        self.dist.barrier("end")
