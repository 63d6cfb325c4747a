"""Training under faults: concurrent runs on one output folder, SIGTERM/SIGINT during training and during
a checkpoint write, a diverging run, resuming a finished or changed run, files deleted mid-epoch, bad
settings. Each test is one class of problem of issue 12 and failed before its fix."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ipt.data import DataLayoutError, load_training_images
from ipt.errors import ConfigError
from ipt.files import OutputInUseError, OutputLock
from ipt.model import load_model
from ipt.train import PRESETS, Trainer, load_config
from ipt.train import loop as loop_module
from ipt.train import state as state_module
from ipt.train.loop import DivergedError
from ipt.train.state import NonFiniteWeightsError, checkpoints

TINY = PRESETS["tiny"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
# A run long enough to be interrupted (120 tiny steps: ~15 s), deterministic so that resumed and
# uninterrupted runs can be compared bit for bit.
LONG = {"extends": "tiny", "deterministic": True, "log_every": 1, "steps": 120, "checkpoint_every": 1000}


def run_cli(*args, cwd, timeout=600):
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=ENV)


def start_cli(*args, cwd, **options):
    return subprocess.Popen([sys.executable, "-m", *args], cwd=cwd, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **options)


def logged_steps(out: Path) -> list[int]:
    if not (out / "log.csv").exists():
        return []
    with open(out / "log.csv") as f:
        return [int(row["step"]) for row in csv.DictReader(f)]


def wait_for_steps(process, out: Path, steps: int, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while len(logged_steps(out)) < steps:
        assert process.poll() is None, f"the run ended early: {process.communicate()}"
        assert time.time() < deadline, "the run did not get going"
        time.sleep(0.05)


def same_weights(a: Path, b: Path) -> bool:
    x, y = load_model(a).state_dict(), load_model(b).state_dict()
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


@pytest.fixture(scope="module")
def samples():
    return load_training_images(min_size=48)


@pytest.fixture
def long_config(tmp_path):
    path = tmp_path / "long.json"
    path.write_text(json.dumps(LONG))
    return str(path)


# --- a run owns its output folder ------------------------------------------------------------------------


def test_a_second_run_on_the_same_output_is_refused_and_a_killed_run_leaves_no_lock(kernels, tmp_path, long_config):
    args = ["ipt.pretrain", "--config", long_config, "--out", "run", "--checkpoint-every", "5", "--no-progress"]
    first = start_cli(*args, cwd=tmp_path)
    try:
        wait_for_steps(first, tmp_path / "run", 8)
        for extra in ([], ["--resume"]):  # neither a new run nor a resume may write there meanwhile
            second = run_cli(*args, *extra, cwd=tmp_path)
            assert second.returncode == 2, second.stderr
            assert f"run is in use by another run (pid {first.pid} on" in second.stderr
            assert len(second.stderr.strip().splitlines()) == 1
        assert first.poll() is None  # untouched by the refused ones
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # The kernel dropped the dead run's lock, so the resume runs; the steps the killed run had logged
    # after its last checkpoint are trained again and logged once.
    resumed = run_cli(*args, "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert logged_steps(tmp_path / "run") == list(range(1, 121))


def test_two_trainers_cannot_share_an_output_folder(kernels, samples, tmp_path):
    first = Trainer(TINY.updated(steps=2), samples, tmp_path, progress=False)
    with pytest.raises(OutputInUseError, match="is in use by another run"):
        Trainer(TINY.updated(steps=2), samples, tmp_path, progress=False)
    first.run()  # ends the ownership: the folder is free again
    assert not first._lock.held
    with OutputLock(tmp_path):
        pass


def test_a_fresh_trainer_never_writes_over_checkpoints(kernels, samples, tmp_path):
    Trainer(TINY.updated(steps=3), samples, tmp_path, progress=False).run()
    before = {p.name: p.read_bytes() for p in checkpoints(tmp_path)}
    with pytest.raises(ConfigError, match="already holds checkpoints of a run: continue it with --resume"):
        Trainer(TINY.updated(steps=3), samples, tmp_path, progress=False)
    assert {p.name: p.read_bytes() for p in checkpoints(tmp_path)} == before


# --- preemption: SIGTERM / SIGINT ------------------------------------------------------------------------


@pytest.mark.parametrize("signum, whole_group", [(signal.SIGTERM, False), (signal.SIGINT, False),
                                                 (signal.SIGTERM, True)],
                         ids=["SIGTERM", "SIGINT", "SIGTERM-to-the-process-group"])
def test_a_stop_signal_writes_a_checkpoint_and_the_resumed_run_is_exact(kernels, tmp_path, long_config, signum,
                                                                       whole_group):
    """A scheduler's SIGTERM (to the process, or to its whole group, DataLoader workers included) or a
    Ctrl-C: a checkpoint at the step reached, the exit status of the signal, and a resume that ends on
    the uninterrupted run's weights with one log row per step."""
    args = ["ipt.pretrain", "--config", long_config, "--no-progress"]
    victim = start_cli(*args, "--out", "stopped", cwd=tmp_path, start_new_session=True)
    wait_for_steps(victim, tmp_path / "stopped", 20)
    if whole_group:
        os.killpg(victim.pid, signum)
    else:
        victim.send_signal(signum)
    out, err = victim.communicate(timeout=120)
    assert victim.returncode == 128 + signum, err
    stopped_at = int(out.split("stopped by ")[1].split(" at step ")[1].split(";")[0])
    assert 20 <= stopped_at < 120
    assert [p.name for p in checkpoints(tmp_path / "stopped")] == [f"step_{stopped_at:08d}.pt"]
    assert f"stopped by {signal.Signals(signum).name} at step {stopped_at}: continue with the same command and " \
           "--resume" in err
    assert not (tmp_path / "stopped" / "model.safetensors").exists()

    resumed = run_cli(*args, "--out", "stopped", "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from stopped/checkpoints/step_{stopped_at:08d}.pt" in resumed.stdout
    straight = run_cli(*args, "--out", "straight", cwd=tmp_path)
    assert straight.returncode == 0, straight.stderr
    assert same_weights(tmp_path / "straight" / "model.safetensors", tmp_path / "stopped" / "model.safetensors")
    assert logged_steps(tmp_path / "stopped") == list(range(1, 121))


def _worker_that_starts_slowly(ready):
    """A worker as torch starts one: its own handler ends it on SIGTERM (as torch's worker start-up installs),
    then, a moment later, the worker_init_fn ignores the stop signals."""
    signal.signal(signal.SIGTERM, lambda *_: os._exit(1))
    ready.set()
    time.sleep(0.5)  # the SIGTERM arrives here, before the init function
    from ipt.preemption import ignore_stop_signals

    ignore_stop_signals()
    time.sleep(0.2)  # a signal left pending would be delivered by now
    os._exit(0)


@pytest.mark.parametrize("blocked", [True, False], ids=["started-with-stop-signals-blocked", "unprotected"])
def test_a_sigterm_while_workers_start_does_not_kill_them(blocked):
    """A scheduler's SIGTERM to the process group can land while a new epoch's DataLoader workers start, after
    torch has installed its worker SIGTERM handler and before our worker_init_fn ignores the signal. Started
    under stop_signals_blocked(), a worker holds it pending until it ignores it; unprotected, it dies."""
    import contextlib
    import multiprocessing

    from ipt.preemption import stop_signals_blocked

    context = multiprocessing.get_context("fork")  # what DataLoader workers use on Linux
    ready = context.Event()
    with stop_signals_blocked() if blocked else contextlib.nullcontext():
        worker = context.Process(target=_worker_that_starts_slowly, args=(ready,))
        worker.start()
    assert ready.wait(10)
    os.kill(worker.pid, signal.SIGTERM)
    worker.join(10)
    assert worker.exitcode == (0 if blocked else 1)


def test_sigterm_during_a_checkpoint_write_keeps_every_checkpoint_whole(kernels, samples, tmp_path, monkeypatch):
    real_write = state_module.atomic_write
    signalled = []

    def write_then_signal(path, write):
        def interrupted(tmp):
            write(tmp)
            if not signalled:  # the signal lands mid-write, after the bytes and before the rename
                signalled.append(path)
                os.kill(os.getpid(), signal.SIGTERM)
        real_write(path, interrupted)

    monkeypatch.setattr(state_module, "atomic_write", write_then_signal)
    summary = Trainer(TINY.updated(steps=20, checkpoint_every=4), samples, tmp_path, progress=False).run()
    assert summary["stopped_by"] == "SIGTERM"
    assert summary["steps"] == 5  # the step after the interrupted write, then a checkpoint of it
    assert [p.name for p in checkpoints(tmp_path)] == ["step_00000004.pt", "step_00000005.pt"]
    for path in checkpoints(tmp_path):
        assert torch.load(path, weights_only=True)["position"]["step"] == int(path.stem[5:])
    assert not list((tmp_path / "checkpoints").glob(".*.tmp"))
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the trainer's handler is gone again


def test_a_stop_signal_to_one_rank_stops_both_at_the_same_step(kernels, tmp_path, long_config):
    """torchrun, SLURM or a user may signal one process of a job: every rank stops at the same step,
    after one checkpoint, instead of the others waiting in a collective for the one that left."""
    port = _free_port()
    env = {**ENV, "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    command = [sys.executable, "-m", "ipt.pretrain", "--config", long_config, "--workers", "1", "--no-progress",
               "--out", "ddp"]
    ranks = [subprocess.Popen(command, cwd=tmp_path, env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for r in range(2)]
    try:
        wait_for_steps(ranks[0], tmp_path / "ddp", 10)
        ranks[1].send_signal(signal.SIGTERM)
        outputs = [p.communicate(timeout=120)[0] for p in ranks]
    finally:
        for p in ranks:
            p.kill()
    assert [p.returncode for p in ranks] == [128 + signal.SIGTERM] * 2, outputs
    saved = checkpoints(tmp_path / "ddp")
    assert len(saved) == 1
    step = int(saved[0].stem[5:])
    assert f"stopped by SIGTERM at step {step}" in outputs[1]
    assert f"stopped by a signal to another rank at step {step}" in outputs[0]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- divergence ------------------------------------------------------------------------------------------


def test_a_diverging_run_stops_with_a_clear_error_and_writes_nothing(kernels, tmp_path):
    result = run_cli("ipt.pretrain", "--config", "tiny", "--steps", "30", "--lr", "1e9", "--out", "run",
                     "--no-progress", cwd=tmp_path)
    assert result.returncode == 2
    assert "error: the loss or the gradients were not finite for the last 6 steps" in result.stderr
    assert "the run diverged; no checkpoint was written. Lower --lr" in result.stderr
    assert "step skipped (1 in a row, at most 5)" in result.stdout
    assert checkpoints(tmp_path / "run") == [] and not (tmp_path / "run" / "model.safetensors").exists()


def _poison_steps(monkeypatch, bad_steps):
    """Makes the loss of the given (1-based) optimizer steps NaN, as a diverging batch would."""
    real_losses = loop_module.Trainer._losses

    def losses(self, forward, batch):
        total, terms = real_losses(self, forward, batch)
        if self.position.step + 1 in bad_steps:
            total, terms = total * float("nan"), terms * float("nan")
        return total, terms

    monkeypatch.setattr(loop_module.Trainer, "_losses", losses)


def test_a_non_finite_step_is_skipped_and_leaves_the_weights_as_they_were(kernels, samples, tmp_path, monkeypatch):
    _poison_steps(monkeypatch, {3})
    weights = []
    real_step = loop_module.Trainer._step

    def step(self, *args):
        result = real_step(self, *args)
        weights.append({k: v.clone() for k, v in self.model.state_dict().items()})
        return result

    monkeypatch.setattr(loop_module.Trainer, "_step", step)
    summary = Trainer(TINY.updated(steps=5, checkpoint_every=100), samples, tmp_path, progress=False).run()
    assert summary["steps"] == 5 and summary["stopped_by"] is None
    assert all(torch.equal(weights[1][k], weights[2][k]) for k in weights[1])  # step 3 changed nothing
    assert not all(torch.equal(weights[2][k], weights[3][k]) for k in weights[2])  # step 4 trained again
    assert load_model(tmp_path / "model.safetensors").state_dict().keys() == weights[-1].keys()


def test_divergence_after_a_good_checkpoint_keeps_it(kernels, samples, tmp_path, monkeypatch):
    _poison_steps(monkeypatch, set(range(4, 100)))
    config = TINY.updated(steps=40, checkpoint_every=3, keep_checkpoints=1, max_nonfinite_steps=4)
    with pytest.raises(DivergedError, match=r"not finite for the last 5 steps \(up to step 8, .*the last checkpoint, "
                                            r".*step_00000003.pt, was written before"):
        Trainer(config, samples, tmp_path, progress=False).run()
    assert [p.name for p in checkpoints(tmp_path)] == ["step_00000003.pt"]  # step 6's was postponed
    assert not (tmp_path / "model.safetensors").exists()


def test_weights_with_nan_are_never_written_over_a_checkpoint(kernels, samples, tmp_path):
    trainer = Trainer(TINY.updated(steps=2, checkpoint_every=1), samples, tmp_path, progress=False)
    trainer.run()
    before = {p.name: p.read_bytes() for p in checkpoints(tmp_path)}
    with torch.no_grad():
        next(trainer.model.parameters()).fill_(float("nan"))
    trainer.position.step = 3
    with pytest.raises(NonFiniteWeightsError, match=r"step_00000003.pt is not written: 1 tensors hold inf or NaN"):
        state_module.save(tmp_path, trainer.model, trainer.optimizer, trainer.scheduler, trainer.position,
                          trainer.config.to_dict(), keep=1)
    assert {p.name: p.read_bytes() for p in checkpoints(tmp_path)} == before  # nothing rotated out


# --- resuming ------------------------------------------------------------------------------------------


def test_resuming_a_finished_run_says_so_and_changes_nothing(kernels, tmp_path):
    args = ["ipt.pretrain", "--config", "tiny", "--out", "run", "--no-progress"]
    assert run_cli(*args, cwd=tmp_path).returncode == 0
    model = (tmp_path / "run" / "model.safetensors").read_bytes()
    again = run_cli(*args, "--resume", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "already finished (step 6 of 6, epoch 0): nothing to train" in again.stdout
    assert "done: 6 steps, nothing left to train" in again.stdout
    assert (tmp_path / "run" / "model.safetensors").read_bytes() == model
    assert logged_steps(tmp_path / "run") == [1, 2, 3, 4, 5, 6]


def test_a_finished_run_cut_short_before_its_model_writes_it_on_resume(kernels, samples, tmp_path):
    Trainer(TINY.updated(steps=3), samples, tmp_path, progress=False).run()
    (tmp_path / "model.safetensors").unlink()  # killed between the last checkpoint and the model
    Trainer(TINY.updated(steps=3), samples, tmp_path, resume=True, progress=False).run()
    assert same_weights(tmp_path / "model.safetensors", checkpoints(tmp_path)[-1])


def test_resuming_with_other_settings_refuses_or_applies_them(kernels, samples, tmp_path):
    Trainer(TINY.updated(steps=3), samples, tmp_path, progress=False).run()
    changed = TINY.updated(steps=6, lr=3e-3, betas=(0.5, 0.9))
    with pytest.raises(ConfigError, match=r"started with other settings \(lr 0.001 -> 0.003, betas \[0.9, 0.999\] "
                                          r"-> \[0.5, 0.9\]\).*--allow-config-changes"):
        Trainer(changed, samples, tmp_path, resume=True, progress=False)
    with pytest.raises(ConfigError, match=r"seed 0 -> 1, batch_size 4 -> 8|batch_size 4 -> 8, seed 0 -> 1"):
        Trainer(TINY.updated(steps=6, seed=1, batch_size=8), samples, tmp_path, resume=True, progress=False,
                allow_config_changes=True)  # settings that decide the data: never
    trainer = Trainer(changed, samples, tmp_path, resume=True, progress=False, allow_config_changes=True)
    assert [g["betas"] for g in trainer.optimizer.param_groups] == [(0.5, 0.9)]
    trainer.run()
    with open(tmp_path / "log.csv") as f:
        assert [float(r["lr"]) for r in csv.DictReader(f)][3:] == [3e-3] * 3
    assert torch.load(checkpoints(tmp_path)[-1], weights_only=True)["config"]["lr"] == 3e-3


def test_steps_logged_after_the_last_checkpoint_are_not_logged_twice(kernels, samples, tmp_path):
    Trainer(TINY.updated(steps=5, checkpoint_every=3, log_every=1), samples, tmp_path, progress=False).run()
    for late in checkpoints(tmp_path)[1:]:  # as if killed after step 5 was logged, before its checkpoint
        late.unlink()
    (tmp_path / "model.safetensors").unlink()
    Trainer(TINY.updated(steps=5, checkpoint_every=3, log_every=1), samples, tmp_path, resume=True,
            progress=False).run()
    assert logged_steps(tmp_path) == [1, 2, 3, 4, 5]


# --- settings ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("setting, message", [
    ("lr = inf", "lr must be a finite number, got inf"),
    ("lr = nan", "lr must be a finite number, got nan"),
    ("grad_clip = -inf", "grad_clip must be a finite number, got -inf"),
    ("temperature = 0.0", "temperature must be > 0, got 0.0"),
    ("seed = 9223372036854775807\nbatch_size = \"8\"", "batch_size must be an integer, got '8'"),
    ("seed = -1", "seed must be an integer in [0, 2**63), got -1"),
    ("tasks = \"sr2\"", "tasks must be a list of strings, got 'sr2'"),
    ("betas = 0.9", "betas must be a list of 2 finite numbers, got 0.9"),
    ("betas = [0.9, 1.0]", "betas must be two numbers in [0, 1), got [0.9, 1.0]"),
    ("model = 5", "model must be a string or a table, got 5"),
    ("[model]\nn_feats = \"wide\"", "model: invalid IPTConfig: n_feats must be an integer >= 1, got 'wide'"),
    ("compile = \"yes\"", "compile must be true or false, got 'yes'"),
    ("micro_batch = 2.5", "micro_batch must be an integer or null, got 2.5"),
    ("dist_timeout = inf", "dist_timeout must be a finite number, got inf"),
])
def test_a_bad_setting_in_a_toml_file_is_one_line_naming_it(tmp_path, setting, message):
    path = tmp_path / "bad.toml"
    path.write_text(f'extends = "tiny"\n{setting}\n')
    with pytest.raises(ConfigError, match="invalid training config: .*" + message.replace("[", r"\[").replace(
            "(", r"\(").replace(")", r"\)").replace("*", r"\*")):
        load_config(path)


def test_a_bad_setting_on_the_command_line_is_one_line(tmp_path):
    result = run_cli("ipt.pretrain", "--config", "tiny", "--lr", "nan", "--out", "run", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: invalid training config: lr must be a finite number, got nan"


# --- files deleted during training -------------------------------------------------------------------------


@pytest.fixture
def own_copy(tmp_path):
    """The sample photographs copied into a folder this test may delete from."""
    import shutil

    from ipt.data import sample_images_dir

    folder = tmp_path / "images"
    shutil.copytree(sample_images_dir(), folder)
    return folder


@pytest.mark.parametrize("loader", ["torch", "dali"])
def test_files_deleted_while_training_are_skipped_and_the_run_finishes(kernels, tmp_path, own_copy, loader):
    data = load_training_images(own_copy, min_size=48, cache=None)
    config = TINY.updated(steps=12, validate_every=3, checkpoint_every=100, loader=loader, workers=1)
    deleted = []

    def delete_half(model, epoch, step):  # a validator is called between steps: the moment to delete
        if not deleted:
            deleted.extend(sorted(own_copy.rglob("*.png"))[::2])
            for path in deleted:
                path.unlink()

    with pytest.warns(RuntimeWarning, match="skipped"):
        summary = Trainer(config, data, tmp_path / "run", validate=delete_half, progress=False).run()
    assert deleted and summary["steps"] == 12 and (tmp_path / "run" / "model.safetensors").is_file()


@pytest.mark.parametrize("loader", ["torch", "dali"])
def test_a_data_set_deleted_while_training_is_a_clear_error(kernels, tmp_path, own_copy, loader):
    data = load_training_images(own_copy, min_size=48, cache=None)
    config = TINY.updated(steps=40, epochs=40, validate_every=2, checkpoint_every=100, loader=loader, workers=1)

    def delete_all(model, epoch, step):
        for path in own_copy.rglob("*.png"):
            path.unlink()

    with pytest.warns(RuntimeWarning), pytest.raises(DataLayoutError, match="gave no complete step of 4 images: the "
                                                                      "images of the data set are gone"):
        Trainer(config, data, tmp_path / "run", validate=delete_all, progress=False).run()


def test_a_checkpoint_postponed_by_a_skipped_step_is_written_at_the_next_good_one(kernels, samples, tmp_path,
                                                                                 monkeypatch, capsys):
    _poison_steps(monkeypatch, {3, 6})  # step 3 falls on a checkpoint, step 6 is the run's last
    summary = Trainer(TINY.updated(steps=6, checkpoint_every=3, keep_checkpoints=5), samples, tmp_path,
                      progress=False).run()
    assert summary["steps"] == 6
    assert [p.name for p in checkpoints(tmp_path)] == ["step_00000004.pt", "step_00000006.pt"]
    out = capsys.readouterr().out
    assert "step 3: checkpoint postponed while steps are not finite" in out
    assert "the last 1 steps were skipped as not finite: the final weights are those of step 5" in out


def test_a_resume_sets_aside_the_unusable_checkpoints_it_passed_over(kernels, samples, tmp_path):
    Trainer(TINY.updated(steps=6, checkpoint_every=3), samples, tmp_path, progress=False).run()
    (tmp_path / "checkpoints" / "step_00000006.pt").write_bytes(b"torn")
    (tmp_path / "model.safetensors").unlink()
    with pytest.warns(RuntimeWarning, match="passed over step_00000006.pt: .*resuming from step_00000003.pt"):
        Trainer(TINY.updated(steps=9, checkpoint_every=3), samples, tmp_path, resume=True, progress=False).run()
    assert [p.name for p in checkpoints(tmp_path)] == ["step_00000003.pt", "step_00000006.pt", "step_00000009.pt"]
    assert (tmp_path / "checkpoints" / "step_00000006.pt.unusable").read_bytes() == b"torn"


def test_a_plain_resume_continues_with_the_options_the_run_was_started_with(kernels, tmp_path):
    started = run_cli("ipt.pretrain", "--config", "tiny", "--lr", "2e-3", "--steps", "3", "--out", "run",
                      "--no-progress", cwd=tmp_path)
    assert started.returncode == 0, started.stderr
    resumed = run_cli("ipt.pretrain", "--resume", "--steps", "5", "--out", "run", "--no-progress", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr  # not refused for lacking --config tiny --lr 2e-3
    assert "resuming with changed settings: steps 3 -> 5" in resumed.stdout
    saved = torch.load(checkpoints(tmp_path / "run")[-1], weights_only=True)["config"]
    assert (saved["lr"], saved["model"], saved["steps"]) == (2e-3, "tiny", 5)
