"""Issue 12, "nothing lost, nothing silent", for restoring: outputs never replace inputs or each other,
user errors are one line (exit 2) and not a traceback, weights with NaN/Inf are refused, and an image's
layout is never guessed from its sizes."""

import errno
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from ipt.data.images import read_image, write_image
from ipt.devices import resolve_device
from ipt.errors import ConfigError, OutputError
from ipt.inference import Restorer
from ipt.model import IPT, CheckpointError, IPTConfig, load_model
from ipt.model.checkpoint import model_payload
from ipt.restore import main

from cli_runs import in_process
from images import photo

TINY = IPTConfig(n_feats=8, patch_size=12, patch_dim=3, num_heads=2, num_layers=1)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    torch.manual_seed(0)
    IPT(["sr2", "noise30"], TINY).save(path)
    return path


def _images(folder, names, size=(20, 24)):
    """Distinct small photographs, one per name; returns {name: bytes of the file}."""
    for k, name in enumerate(names):
        write_image(folder / name, photo("coffee")[k * 7 : k * 7 + size[0], k * 5 : k * 5 + size[1]])
    return {name: (folder / name).read_bytes() for name in names}


def _unchanged(folder, before):
    return {p.name: p.read_bytes() for p in folder.iterdir()} == before


def restore_cli(capsys, *args):
    """(exit status, stdout, stderr) of `python -m ipt.restore ARGS`, run in this process."""
    return in_process(main, capsys, *args)


def _one_line(err, *words):
    lines = err.strip().splitlines()
    return len(lines) == 1 and lines[0].startswith("error: ") and all(w in lines[0] for w in words)


def _python_m(*args, cwd):
    return subprocess.run([sys.executable, "-m", *map(str, args)], cwd=cwd, capture_output=True, timeout=600)


# --- 1. outputs never replace inputs or each other ----------------------------------------------------------


def test_inputs_sharing_a_name_get_one_result_each_and_a_note(kernels, weights, tmp_path, capsys):
    source = tmp_path / "in"
    before = _images(source, ["x.jpg", "x.png", "y.png"])
    code, out, err = restore_cli(capsys, "--task", "sr2", "--weights", weights, "--input", source,
                                 "--output", tmp_path / "out", "--compare", "--device", "cpu")  # as `restorer`
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "x_jpg.png", "x_jpg_compare.png", "x_png.png", "x_png_compare.png", "y.png", "y_compare.png"]
    notes = [line for line in out.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "x.jpg -> x_jpg.png" in notes[0] and "x.png -> x_png.png" in notes[0]
    restorer = Restorer(task="sr2", weights=weights, device="cpu")
    for name, result in (("x.jpg", "x_jpg.png"), ("x.png", "x_png.png"), ("y.png", "y.png")):
        expected = restorer.restore(read_image(source / name))
        np.testing.assert_array_equal(read_image(tmp_path / "out" / result), expected)
    assert _unchanged(source, before)


def test_an_output_that_is_an_input_is_refused_even_with_overwrite(weights, tmp_path, capsys):
    source = tmp_path / "in"
    before = _images(source, ["a.png", "b.png"])
    # In place, and one file as its own output spelled another way; the weights do not exist, so these
    # fail before the model would load.
    for args in (["--input", source, "--output", source],
                 ["--input", source / "a.png", "--output", source / ".." / "in" / "a.png", "--overwrite"]):
        code, out, err = restore_cli(capsys, "--task", "sr2", "--weights", tmp_path / "missing.pt", *args)
        assert code == 2 and _one_line(err, "a.png would replace", "an input of this run"), err
        assert _unchanged(source, before)


def test_the_target_is_never_an_output(weights, tmp_path, capsys):
    before = _images(tmp_path, ["lr.png", "hr.png"])
    code, out, err = restore_cli(capsys, "--task", "sr2", "--weights", weights, "--input", tmp_path / "lr.png",
                                 "--output", tmp_path / "hr.png", "--target", tmp_path / "hr.png", "--overwrite")
    assert code == 2 and _one_line(err, "hr.png would replace"), err
    assert _unchanged(tmp_path, before)


def test_existing_files_are_only_replaced_with_overwrite(kernels, weights, tmp_path, capsys):
    source, output = tmp_path / "in", tmp_path / "out"
    _images(source, ["a.png", "b.png", "c.png"])
    output.mkdir()
    (output / "b.png").write_bytes(b"someone's file")
    (output / "c.png").write_bytes(b"another one")
    args = ["--task", "noise30", "--weights", weights, "--input", source, "--output", output]
    code, out, err = restore_cli(capsys, *args)
    assert code == 2 and _one_line(err, f"{output / 'b.png'} exists already", "1 more", "--overwrite"), err
    assert sorted(p.name for p in output.iterdir()) == ["b.png", "c.png"]  # nothing written, a.png neither
    assert (output / "b.png").read_bytes() == b"someone's file"
    code, out, err = restore_cli(capsys, *args, "--overwrite")
    assert code == 0, err
    assert sorted(p.name for p in output.iterdir()) == ["a.png", "b.png", "c.png"]
    assert read_image(output / "b.png").shape == (20, 24, 3)


def test_two_inputs_that_would_share_an_output_are_refused(weights, tmp_path, capsys):
    # x.png and x.jpg become x_png.png and x_jpg.png: x_png.png's own result is x_png.png too.
    before = _images(tmp_path / "in", ["x.png", "x.jpg", "x_png.png"])
    code, out, err = restore_cli(capsys, "--task", "sr2", "--weights", weights, "--input", tmp_path / "in",
                                 "--output", tmp_path / "out")
    assert code == 2 and _one_line(err, "x.png and the result of", "x_png.png would both be written to"), err
    # A comparison picture and another input's result on one path.
    _images(tmp_path / "cmp", ["a.png", "a_compare.png"])
    code, out, err = restore_cli(capsys, "--task", "sr2", "--weights", weights, "--input", tmp_path / "cmp",
                                 "--output", tmp_path / "out", "--compare")
    assert code == 2 and _one_line(err, "a_compare.png and the comparison of", "a.png would both be written"), err
    assert not (tmp_path / "out").exists() and _unchanged(tmp_path / "in", before)


def test_the_python_api_plans_its_outputs_the_same_way(kernels, weights, tmp_path):
    source = tmp_path / "in"
    before = _images(source, ["x.jpg", "x.png"])
    restorer = Restorer(task="sr2", weights=weights, device="cpu")
    with pytest.warns(UserWarning, match="x.jpg -> x_jpg.png, x.png -> x_png.png"):
        results = restorer.run(source, output=tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["x_jpg.png", "x_png.png"]
    np.testing.assert_array_equal(read_image(tmp_path / "out" / "x_png.png"), results[1])
    with pytest.raises(ConfigError, match=r"x_jpg.png exists already .*overwrite=True"):
        restorer.run(source, output=tmp_path / "out")
    with pytest.warns(UserWarning):
        restorer.run(source, output=tmp_path / "out", overwrite=True)
    with pytest.raises(ConfigError, match="would replace .*an input of this run"):
        restorer.run(source / "x.png", output=source / "x.png", overwrite=True)
    with pytest.raises(ConfigError, match="looks like an image file name"):  # a list's output is a folder
        restorer.run([source / "x.png"], output=tmp_path / "one.png")
    with pytest.raises(ConfigError, match="exists already"):  # an array's output too
        restorer.run(photo("coffee")[:12, :12], output=source / "x.png")
    assert _unchanged(source, before)


# --- 2. one line where a traceback was ----------------------------------------------------------------------


@pytest.mark.parametrize("output, message", [
    ("out", "--output {tmp}/out is a folder, but the input is one image"),
    ("result.txt", "not an image file name (extension '.txt')"),
    ("result", "not an image file name (extension '')"),
    ("a_file/x.png", "cannot write into {tmp}/a_file: {tmp}/a_file is a file, not a folder"),
])
def test_a_mistyped_output_for_one_file_is_one_line_before_the_model_loads(tmp_path, capsys, output, message):
    _images(tmp_path, ["in.png"])
    (tmp_path / "out").mkdir()
    (tmp_path / "a_file").write_bytes(b"not a folder")
    code, out, err = restore_cli(capsys, "--task", "sr2", "--weights", tmp_path / "missing.pt",  # never read
                                 "--input", tmp_path / "in.png", "--output", tmp_path / output)
    assert code == 2 and _one_line(err, message.format(tmp=tmp_path)), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "in.png", "out"]
    assert not list((tmp_path / "out").iterdir())


@pytest.mark.parametrize("output, message", [
    ("a_file", "--output {tmp}/a_file is a file, but there are several inputs"),
    ("results.png", "looks like an image file name, but there are several inputs"),
    ("a_file/results", "{tmp}/a_file is a file, not a folder"),
])
def test_a_mistyped_output_for_a_folder_is_one_line_before_the_model_loads(tmp_path, capsys, output, message):
    _images(tmp_path / "in", ["a.png"])
    (tmp_path / "a_file").write_bytes(b"not a folder")
    code, out, err = restore_cli(capsys, "--task", "sr2", "--weights", tmp_path / "missing.pt",
                                 "--input", tmp_path / "in", "--output", tmp_path / output)
    assert code == 2 and _one_line(err, message.format(tmp=tmp_path)), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "in"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into any folder")
def test_a_read_only_output_folder_is_one_line_before_the_model_loads(tmp_path, capsys):
    _images(tmp_path, ["in.png"])
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        code, out, err = restore_cli(capsys, "--task", "sr2", "--weights", tmp_path / "missing.pt",
                                     "--input", tmp_path / "in.png", "--output", locked / "sub" / "x.png")
    finally:
        locked.chmod(0o755)
    assert code == 2 and _one_line(err, f"no permission to create files in {locked}"), err


def test_a_failed_write_is_one_line_naming_the_file(kernels, weights, tmp_path, capsys, monkeypatch):
    import ipt.data.images

    def disk_full(path, write):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    _images(tmp_path, ["in.png"])
    monkeypatch.setattr(ipt.data.images, "atomic_write", disk_full)
    code, out, err = restore_cli(capsys, "--task", "sr2", "--weights", weights, "--input", tmp_path / "in.png",
                                 "--output", tmp_path / "x.png")
    assert code == 2 and _one_line(err, f"{tmp_path / 'x.png'}: cannot write it (No space left on device)"), err
    assert issubclass(OutputError, OSError)


def test_devices_that_are_not_there_are_one_clear_error(monkeypatch):
    assert resolve_device(None) == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == resolve_device(torch.device("cpu")) == torch.device("cpu")
    for spec in ("gpu", "garbage", ""):
        with pytest.raises(ConfigError, match=rf"--device '{spec}': not a device"):
            resolve_device(spec)
    with pytest.raises(ConfigError, match="the toolkit runs on cpu, cuda, cuda:N or mps, not meta"):
        resolve_device("meta")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    version = re.escape(torch.__version__)
    with pytest.raises(ConfigError, match=rf"--device cuda: no CUDA GPU is visible to torch {version} \(built"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match=r"--device cuda:3: this machine has 1 CUDA device \(cuda:0"):
        resolve_device("cuda:3")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ConfigError, match=r"cuda:2: this machine has 2 CUDA devices \(cuda:0 ... cuda:1"):
        resolve_device(torch.device("cuda", 2))
    assert resolve_device("cuda:1") == torch.device("cuda", 1)


def test_restore_on_a_missing_gpu_is_one_line(weights, tmp_path):
    _images(tmp_path, ["in.png"])
    done = _python_m("ipt.restore", "--task", "sr2", "--weights", weights, "--input", "in.png", "--output", "x.png",
                     "--device", "cuda:63", cwd=tmp_path)
    err = done.stderr.decode()
    assert done.returncode == 2 and _one_line(err, "--device cuda:63: "), err
    assert not (tmp_path / "x.png").exists()


def _ours_safetensors(path, **metadata):
    """Our format with its metadata replaced: what a damaged or hand-edited file holds."""
    from safetensors.torch import save_file

    torch.manual_seed(1)
    payload = model_payload(IPT(["sr2"], TINY))
    base = {"format": "ipt-toolkit", "version": "1", "config": json.dumps(payload["config"]),
            "tasks": json.dumps(payload["tasks"])}
    metadata = {k: v for k, v in {**base, **metadata}.items() if v is not None}  # None: left out
    save_file(payload["state_dict"], str(path), metadata=metadata)
    return path


def _ours_pt(path, **entries):
    torch.manual_seed(1)
    payload = model_payload(IPT(["sr2"], TINY))
    torch.save({k: v for k, v in {**payload, **entries}.items() if v is not None}, path)
    return path


def _official_pt(path, **entries):
    torch.manual_seed(1)
    torch.save({**IPT(["sr2"], TINY).state_dict(), **entries}, path)
    return path


def _config(**changes) -> str:
    return json.dumps({**TINY.to_dict(), **changes})


BAD_FILES = {  # name -> (writer, what the message says)
    "config-not-json.safetensors": (lambda p: _ours_safetensors(p, config="{n_feats: 8"),
                                    "'config' metadata is not JSON"),
    "tasks-not-json.safetensors": (lambda p: _ours_safetensors(p, tasks="sr2"), "'tasks' metadata is not JSON"),
    "no-config.safetensors": (lambda p: _ours_safetensors(p, config=None), "without its 'config' metadata"),
    "config-a-list.safetensors": (lambda p: _ours_safetensors(p, config="[8, 12]"), "'config' should be a dict"),
    "unknown-field.safetensors": (lambda p: _ours_safetensors(p, config=_config(heads=2)),
                                  "unknown IPTConfig fields ['heads']"),
    "mean-of-2.safetensors": (lambda p: _ours_safetensors(p, config=_config(rgb_mean=[0.4, 0.4])),
                              "rgb_mean must be 3 numbers"),
    "range-a-string.safetensors": (lambda p: _ours_safetensors(p, config=_config(rgb_range="255")),
                                   "rgb_range must be a number > 0, got '255'"),
    "tasks-ints.safetensors": (lambda p: _ours_safetensors(p, tasks="[2]"), "'tasks' should be task names"),
    "version-9.safetensors": (lambda p: _ours_safetensors(p, version="9"), "format version '9'"),
    "no-state.pt": (lambda p: _ours_pt(p, state_dict=None), "without its 'state_dict'"),
    "state-a-list.pt": (lambda p: _ours_pt(p, state_dict=[1, 2]), "'state_dict' should be a dict of tensors, not list"),
    "state-of-ints.pt": (lambda p: _ours_pt(p, state_dict={"head.0.0.weight": 3}), "maps 'head.0.0.weight' to a value"),
    "integer-weights.pt": (lambda p: _ours_pt(p, state_dict={k: v.long() for k, v in
                                                             model_payload(IPT(["sr2"], TINY))["state_dict"].items()}),
                           "not floating point where the model's are"),
    "IPT_sr2_extra_head.pt": (lambda p: _official_pt(p, **{"head.extra.weight": torch.zeros(1)}),
                              "unexpected 1 keys (e.g. ['head.extra.weight'])"),
    "IPT_sr2_scalar.pt": (lambda p: _official_pt(p, **{"body.linear_encoding.weight": torch.tensor(1.0)}),
                          "body.linear_encoding.weight has shape ()"),
    "IPT_sr2_int_key.pt": (lambda p: torch.save({**IPT(["sr2"], TINY).state_dict(), 7: torch.zeros(1)}, p),
                           "maps 7 to a value"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_a_model_file_with_bad_metadata_is_one_checkpoint_error(tmp_path, name):
    write, message = BAD_FILES[name]
    path = tmp_path / name
    write(path)
    with pytest.raises(CheckpointError) as raised:
        load_model(path, "sr2", num_heads=2 if name.startswith("IPT_") else None)
    assert str(raised.value).startswith(str(path)) and message in str(raised.value), raised.value


def test_our_safetensors_file_whose_header_looks_like_a_pickle_keeps_its_config(tmp_path):
    # The header's length comes first: with a low byte of 0x80, the file was sniffed as a pickle, read by
    # torch.load without its metadata and taken for an official file of unknown head count.
    torch.manual_seed(2)
    model = IPT(["noise30"], TINY)
    path = tmp_path / "model.safetensors"
    for pad in range(256):
        model.save(path, note="x" * pad)
        if path.read_bytes()[0] == 0x80:
            break
    assert path.read_bytes()[0] == 0x80
    loaded = load_model(path, "noise30")
    assert loaded.config == TINY and loaded.task_names == ["noise30"]


# --- 3. weights with NaN or Inf -----------------------------------------------------------------------------


def _diverged_state():
    torch.manual_seed(3)
    model = IPT(["sr2"], TINY)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["body.encoder.layers.0.linear1.weight"][0, 0] = float("nan")
    state["tail.0.0.0.bias"][1] = float("inf")
    return model, state


@pytest.mark.parametrize("kind", ["ours.safetensors", "ours.pt", "IPT_sr2.pt", "training.pt"])
def test_weights_with_nan_or_inf_are_refused(tmp_path, kind):
    model, state = _diverged_state()
    path = tmp_path / kind
    if kind.startswith("ours"):
        model.load_state_dict(state)
        model.save(path)
    elif kind == "IPT_sr2.pt":
        torch.save(state, path)
    else:  # a training checkpoint bundles the model's payload
        model.load_state_dict(state)
        torch.save({"format": "ipt-train", "model": model_payload(model), "step": 7}, path)
    # An official file's head count is asked for only after its weights are found sound.
    with pytest.raises(CheckpointError) as raised:
        load_model(path, "sr2")
    message = str(raised.value)
    assert message.startswith(f"{path}: 2 of its ") and "floating-point tensors hold NaN or Inf" in message
    assert "e.g. body.encoder.layers.0.linear1.weight" in message and "diverged" in message


def test_every_way_of_loading_checks_the_weights():
    model, state = _diverged_state()
    with pytest.raises(CheckpointError, match="in memory: 2 of its"):
        IPT.from_official_state_dict(state, "in memory", num_heads=2)
    payload = model_payload(model)
    with pytest.raises(CheckpointError, match="in memory: 2 of its"):
        IPT.from_payload({**payload, "state_dict": state}, "in memory")


def test_restore_with_diverged_weights_is_one_line_and_writes_nothing(tmp_path):
    model, state = _diverged_state()
    model.load_state_dict(state)
    model.save(tmp_path / "diverged.safetensors")
    _images(tmp_path, ["in.png"])
    done = _python_m("ipt.restore", "--task", "sr2", "--weights", "diverged.safetensors", "--input", "in.png",
                     "--output", "x.png", cwd=tmp_path)
    err = done.stderr.decode()
    assert done.returncode == 2 and _one_line(err, "diverged.safetensors: 2 of its", "NaN or Inf"), err
    assert not (tmp_path / "x.png").exists()


# --- 4. an image's layout is its container's, never guessed from its sizes --------------------------------


@pytest.mark.parametrize("height", [1, 2, 3, 4])
def test_a_numpy_image_is_hwc_whatever_its_height(kernels, weights, height):
    restorer = Restorer(task="sr2", weights=weights, device="cpu")
    image = photo("coffee")[100 : 100 + height, 200:240]  # (height, 40, 3)
    result = restorer.restore(image)
    assert result.shape == (2 * height, 80, 3)
    chw = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)  # the same image as a tensor
    np.testing.assert_array_equal(restorer.restore(chw), result)
    np.testing.assert_array_equal(restorer.restore(image.T.copy().T), result)  # another memory order, same layout


def test_the_other_layout_is_refused_with_the_fix(kernels, weights):
    # The calling code's bug (the tools pass read_image's arrays): a plain ValueError, with its traceback.
    restorer = Restorer(task="sr2", weights=weights, device="cpu")
    with pytest.raises(ValueError, match=r"a numpy image is \(H, W, C\) .* got shape \[3, 40, 40\] .*from_numpy"):
        restorer.restore(np.zeros((3, 40, 40), np.uint8))
    with pytest.raises(ValueError, match=r"a tensor image is \(C, H, W\) .* got shape \[40, 40, 3\] .*permute"):
        restorer.restore(torch.zeros(40, 40, 3))
    grey = photo("coffee")[:5, :6, 0]
    np.testing.assert_array_equal(restorer.restore(grey), restorer.restore(np.repeat(grey[..., None], 3, axis=2)))


# --- paths that are not UTF-8 ---------------------------------------------------------------------------------


@pytest.mark.skipif(sys.platform != "linux", reason="a file name of arbitrary bytes")
def test_restore_prints_names_that_are_not_utf8(weights, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    name = os.fsdecode(b"caf\xe9.png")  # Latin-1, not UTF-8
    write_image(folder / name, photo("coffee")[:12, :12])
    done = _python_m("ipt.restore", "--task", "noise30", "--weights", weights, "--input", "in", "--output", "out",
                     cwd=tmp_path)
    assert done.returncode == 0, done.stderr.decode(errors="backslashreplace")
    assert done.stdout.decode().startswith("in/caf\\xe9.png -> out/caf\\xe9.png (12x12 -> 12x12)")
    assert os.listdir(tmp_path / "out") == [name]
