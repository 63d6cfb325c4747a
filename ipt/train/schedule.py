"""The learning rate of every optimizer step, as a function of the run's position alone.

Two decays, each after an optional linear warm-up over the first `warmup_steps` steps (or `warmup_epochs`
epochs, MPRNet's recipe, counted in the run's steps per epoch):
- "step" (the paper's): the rate is multiplied by lr_gamma at each epoch of lr_milestones
  (5e-5 -> 2e-5 at epoch 200 for IPT);
- "cosine": from lr down to lr_min along half a cosine over the run's steps, the schedule short runs
  learn fastest with.

Because the rate depends only on (step, epoch), which every checkpoint records, a resumed run continues
the very same schedule; the schedule keeps no state of its own.
"""

from __future__ import annotations

import math

LR_DECAYS = ("step", "cosine")


class LRSchedule:
    def __init__(self, config, total_steps: int, steps_per_epoch: int = 1):
        self.lr, self.lr_min = config.lr, config.lr_min
        self.decay = config.lr_decay
        self.warmup_steps = config.warmup_steps or getattr(config, "warmup_epochs", 0) * steps_per_epoch
        self.milestones, self.gamma = tuple(config.lr_milestones), config.lr_gamma
        self.total_steps = total_steps

    def rate(self, step: int, epoch: int) -> float:
        """The learning rate of the optimizer step that follows `step` finished steps, in `epoch`."""
        warmup = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps else 1.0
        if self.decay == "cosine":
            done = min(step / max(self.total_steps - 1, 1), 1.0)
            decayed = self.lr_min + (self.lr - self.lr_min) * 0.5 * (1.0 + math.cos(math.pi * done))
        else:
            decayed = self.lr * self.gamma ** sum(epoch >= m for m in self.milestones)
        return decayed * warmup

    def apply(self, optimizer, step: int, epoch: int) -> float:
        rate = self.rate(step, epoch)
        for group in optimizer.param_groups:
            group["lr"] = rate
        return rate

    # Checkpoints keep a "scheduler" entry: what the schedule was, for a reader of the file. Nothing is
    # restored from it (older checkpoints hold a MultiStepLR state there, which is ignored the same way).
    def state_dict(self) -> dict:
        return {"decay": self.decay, "lr": self.lr, "lr_min": self.lr_min, "warmup_steps": self.warmup_steps,
                "milestones": list(self.milestones), "gamma": self.gamma, "total_steps": self.total_steps}

    def load_state_dict(self, state: dict) -> None:
        pass
