"""A rank that fails on purpose, for tests/test_distributed_failures.py. Run by torchrun (or with RANK,
WORLD_SIZE, MASTER_ADDR and MASTER_PORT set) as one process of a job:

    IPT_TEST_FAULTY=1 distributed_faults.py FAULT [arguments...]

FAULT, in the processes with IPT_TEST_FAULTY=1 only (the others run normally):
  none            ipt.pretrain, no fault
  startup-raise   ipt.pretrain, whose data folder is missing on that rank's node
  run-raise       ipt.pretrain, which raises at its third step
  run-kill        ipt.pretrain, which is SIGKILLed at its third step
  kill-while-busy the watchdog alone: the rank is SIGKILLed while the others are busy outside any
                  collective (as in a long validation), so only its missing heartbeat can tell them
  hang            the watchdog alone: the rank sleeps (alive, stuck) while the others wait in a collective
  finish-late     the watchdog alone, no fault: after the last barrier the rank takes 8 s more to finish
                  than the others (rank 0, which hosts the store, must not take it down as a failure)
  raise-unguarded the watchdog alone: the rank raises a user-facing error (ConfigError) outside any
                  guard (teardown() in a finally must report it), while the others wait at a barrier
  raise-while-peer-writes  the watchdog alone: the rank raises while the others write a checkpoint
                  (a `critical` block of 3 s), which must be finished before they end
"""

import os
import signal
import sys
import time

FAULT, ARGS = sys.argv[1], sys.argv[2:]
FAULTY = os.environ.get("IPT_TEST_FAULTY") == "1"


def pretrain_with_fault():
    from ipt import pretrain
    from ipt.cli import run_main
    from ipt.data.folders import DataLayoutError
    from ipt.train import loop

    if FAULTY and FAULT == "startup-raise":
        def missing(*args, **kwargs):
            print(f"fault at {time.time():.3f}", flush=True)
            raise DataLayoutError("no such data folder: /local/imagenet/train (simulated, on this node only)")

        pretrain.load_training_images = missing
    if FAULTY and FAULT in ("run-raise", "run-kill"):
        losses = loop.Trainer._losses

        def failing(self, forward, batch):
            if self.position.step == 2:
                print(f"fault at {time.time():.3f}", flush=True)
                if FAULT == "run-kill":
                    os.kill(os.getpid(), signal.SIGKILL)
                raise RuntimeError("CUDA out of memory (simulated)")
            return losses(self, forward, batch)

        loop.Trainer._losses = failing
    run_main(lambda: pretrain.main(ARGS))


def watchdog_alone():
    import torch
    import torch.distributed as dist

    from ipt.cli import run_main
    from ipt.errors import ConfigError
    from ipt.train import distributed

    def main():
        session = distributed.setup("cpu", timeout=float(ARGS[0]), heartbeat_timeout=float(ARGS[1]))
        print(f"rank {session.rank} ready", flush=True)
        try:
            if FAULT == "raise-unguarded":
                if FAULTY:
                    time.sleep(0.5)
                    raise ConfigError("raised outside any guard")
                session.barrier("work")
                return
            with session.guard():
                if FAULT == "raise-while-peer-writes":
                    if FAULTY:
                        time.sleep(0.5)
                        raise OSError("disk full (simulated)")
                    with session.critical():
                        time.sleep(3.0)
                        print(f"rank {session.rank} wrote its checkpoint", flush=True)
                    time.sleep(600)
                elif FAULT == "finish-late":
                    session.barrier("work")
                    time.sleep(8.0 if FAULTY else 0.0)
                    print(f"rank {session.rank} finished", flush=True)
                elif FAULTY:
                    time.sleep(1.0)
                    print(f"fault at {time.time():.3f}", flush=True)
                    if FAULT == "kill-while-busy":
                        os.kill(os.getpid(), signal.SIGKILL)
                    time.sleep(600)  # hang: alive, and never reaching the collective
                elif FAULT == "kill-while-busy":
                    time.sleep(600)  # busy on its own, outside any collective
                else:
                    dist.all_reduce(torch.ones(1))
        finally:
            distributed.teardown()

    run_main(main)


if __name__ == "__main__":
    pretrain_with_fault() if FAULT in ("none", "startup-raise", "run-raise", "run-kill") else watchdog_alone()
