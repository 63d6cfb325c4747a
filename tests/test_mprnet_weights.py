"""MPRNet's files: ours, the authors' .pth, PaddleGAN's .pdparams (and pickles that try to run code), files
that do not fit, and ipt.families.load_model choosing the family by itself."""

import json
import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import ipt.model
from ipt.errors import ConfigError
from ipt.families import load_model
from ipt.model import IPT
from ipt.model.checkpoint import CheckpointError, model_payload
from ipt.mprnet import PRESETS, MPRNet, MPRNetConfig, read_pdparams

OFFICIAL = json.loads((Path(__file__).parent / "data" / "mprnet_official_keys.json").read_text())["presets"]


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    model = MPRNet("deblur", "tiny")
    with torch.no_grad():
        model.shared_prelu.weight.fill_(0.1)  # not PReLU's default 0.25: a lost slope would show
    return model.eval()


@pytest.fixture
def image():
    torch.manual_seed(1)
    return torch.rand(1, 3, 13, 19)


def same_outputs(a: MPRNet, b: MPRNet, x: torch.Tensor) -> bool:
    with torch.no_grad():
        return all(torch.equal(p, q) for p, q in zip(a(x), b(x)))


def write_official_pth(path, state, prefix="module.", wrapped=True):
    """A file as the authors released them: {'epoch', 'state_dict', 'optimizer'}, DataParallel names."""
    state = {prefix + k: v.clone() for k, v in state.items()}
    content = {"epoch": 3000, "state_dict": state,
               "optimizer": {"state": {}, "param_groups": [{"lr": 1e-6, "params": [0, 1, 2]}]}} if wrapped else state
    torch.save(content, path)
    return path


def write_pdparams(path, state, protocol=2):
    """A file as PaddleGAN's: a pickled dict of numpy arrays, the PReLU slopes named `_weight`."""
    arrays = {(k[: -len("weight")] + "_weight" if k.endswith("body.1.weight") and v.shape == (1,) else k): v.numpy()
              for k, v in state.items()}
    arrays["StructuredToParameterName@@"] = {k: f"param_{i}" for i, k in enumerate(arrays)}
    with open(path, "wb") as f:
        pickle.dump(arrays, f, protocol=protocol)
    return path


def zeros_of(preset: str) -> dict:
    """A state_dict of an official network's shapes (zeros: cheap, and enough for shape checks)."""
    return {k: torch.zeros(shape) for k, shape in OFFICIAL[preset]["shapes"].items()}


# --- round trips ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_our_checkpoints_round_trip(tmp_path, tiny, image, suffix):
    path = tmp_path / f"mprnet{suffix}"
    tiny.save(path, note="test")
    loaded = MPRNet.load(path)
    assert loaded.config == tiny.config and loaded.task_names == ["deblur"]
    assert same_outputs(tiny, loaded, image)
    assert isinstance(load_model(path), MPRNet)


@pytest.mark.parametrize("prefix, wrapped", [("module.", True), ("", True), ("module.", False), ("", False)])
def test_official_pth_files_load_strictly(tmp_path, tiny, image, prefix, wrapped):
    path = write_official_pth(tmp_path / "model_deraining.pth", tiny.state_dict(), prefix, wrapped)
    loaded = MPRNet.load_official(path)
    assert loaded.config == tiny.config
    assert loaded.task_names == ["derain"]  # a size of no preset: the task is read from the file name
    assert same_outputs(tiny, loaded, image)
    chosen = load_model(path)
    assert isinstance(chosen, MPRNet) and same_outputs(tiny, chosen, image)


@pytest.mark.parametrize("protocol", [2, 4])
def test_pdparams_files_load_strictly(tmp_path, tiny, image, protocol):
    path = write_pdparams(tmp_path / "MPR_Deblurring.pdparams", tiny.state_dict(), protocol)
    raw = read_pdparams(path)
    assert "shallow_feat1.1.body.1._weight" in raw and "StructuredToParameterName@@" not in raw
    assert all(isinstance(v, torch.Tensor) and v.dtype == torch.float32 for v in raw.values())
    loaded = MPRNet.load_official(path)
    assert loaded.task_names == ["deblur"] and same_outputs(tiny, loaded, image)
    assert loaded.shared_prelu.weight.item() == pytest.approx(0.1)
    chosen = load_model(path, task="noise30")  # any scale-1 task
    assert isinstance(chosen, MPRNet) and same_outputs(tiny, chosen, image)


def test_paddlegan_training_files_keep_the_network_under_generator(tmp_path, tiny, image):
    path = write_pdparams(tmp_path / "weights.pdparams", tiny.state_dict())
    with open(path, "rb") as f:
        arrays = pickle.load(f)
    with open(path, "wb") as f:
        pickle.dump({"generator": arrays}, f, protocol=2)
    assert same_outputs(tiny, MPRNet.load_official(path), image)


@pytest.mark.filterwarnings("ignore:.*meta parameter")
@pytest.mark.parametrize("preset", ["deblur", "denoise", "derain"])
def test_the_sizes_of_an_official_file_are_read_off_its_weights(preset):
    state = zeros_of(preset)
    with torch.device("meta"):  # the shapes are what matters; no memory for the model
        model = MPRNet.from_official_state_dict({"state_dict": state}, f"model_{preset}.pth")
    assert model.config == PRESETS[preset]
    assert model.task_names == [preset]  # the official preset's task


# --- pickles that try to run code ---------------------------------------------------------------------------


class _Runs:
    def __init__(self, function, argument):
        self.function, self.argument = function, argument

    def __reduce__(self):
        return self.function, (self.argument,)


@pytest.mark.parametrize("function, refused", [(os.system, "system"), (exec, "builtins.exec"),
                                               (eval, "builtins.eval")])
def test_pickles_that_call_anything_are_refused_unrun(tmp_path, function, refused):
    marker = tmp_path / "ran"
    argument = f"touch {marker}" if function is os.system else f"open({str(marker)!r}, 'w').close()"
    path = tmp_path / "MPR_Deblurring.pdparams"
    with open(path, "wb") as f:
        pickle.dump({"shallow_feat1.0.weight": _Runs(function, argument)}, f, protocol=2)
    for load in (read_pdparams, MPRNet.load_official, load_model):
        with pytest.raises(CheckpointError, match=f"{refused}: refused, nothing in it was run"):
            load(path)
    assert not marker.exists()
    # the same pickle, read without the restrictions, does run its call: the test would notice a leak
    with open(path, "rb") as f:
        pickle.load(f)
    assert marker.exists()


@pytest.mark.parametrize("content, message", [
    ([np.zeros(3, np.float32)], "not a dict"),
    ({"tail.weight": np.zeros((3, 6, 3, 3), np.int64)}, "int64, not of floating-point"),
    ({"tail.weight": "weights"}, "holds a str, not a numpy array"),
    ({"tail.weight": np.array([1, "x"], dtype=object)}, "Python objects"),
])
def test_pdparams_holding_anything_but_float_arrays_are_refused(tmp_path, content, message):
    path = tmp_path / "bad.pdparams"
    with open(path, "wb") as f:
        pickle.dump(content, f, protocol=2)
    with pytest.raises(CheckpointError, match=message):
        read_pdparams(path)


# --- files that do not fit ------------------------------------------------------------------------------------


def test_missing_unexpected_and_misshapen_keys_are_named(tmp_path, tiny):
    state = tiny.state_dict()
    missing = {k: v for k, v in state.items() if k != "stage2_encoder.csff_enc1.weight"}
    with pytest.raises(CheckpointError, match=r"missing 1 keys \(e.g. \['stage2_encoder.csff_enc1.weight'\]\).*"
                                              r"look like the tiny preset \(n_feat 4, scale_unetfeats 2"):
        MPRNet.from_official_state_dict(missing, "model.pth")
    sizes = dict(n_feat=6, scale_unetfeats=2, scale_orsnetfeats=3, num_cab=2)
    custom = MPRNet("deblur", MPRNetConfig(**sizes)).state_dict()
    del custom["stage3_orsnet.orb3.body.1.CA.conv_du.0.weight"]
    with pytest.raises(CheckpointError, match=r"missing 1 keys.*match no preset: n_feat 6, scale_unetfeats 2, "
                                              r"scale_orsnetfeats 3, num_cab 2\."):
        MPRNet.from_official_state_dict(custom, "model.pth")
    del custom["tail.weight"]  # one of the weights the sizes are read from
    with pytest.raises(CheckpointError, match=r"not an MPRNet state_dict: no tail.weight"):
        MPRNet.from_official_state_dict(custom, "model.pth")
    with pytest.raises(CheckpointError, match=r"missing 2 keys.*sizes cannot be read; the model asked for has sizes "
                                              r"of no preset \(n_feat 6"):
        MPRNet.from_official_state_dict(custom, "model.pth", config=sizes)
    extra = {**state, "stage4.weight": torch.zeros(1), "stage5.weight": torch.zeros(1)}
    with pytest.raises(CheckpointError, match=r"unexpected 2 keys \(e.g. \['stage4.weight', 'stage5.weight'\]\)"):
        MPRNet.from_official_state_dict(extra, "model.pth")
    misshapen = {**state, "stage2_encoder.csff_enc1.weight": torch.zeros(4, 4, 3, 3)}
    with pytest.raises(CheckpointError, match=r"1 shape mismatches \(e.g. stage2_encoder.csff_enc1.weight: file "
                                              r"\(4, 4, 3, 3\), model \(4, 4, 1, 1\)\)"):
        MPRNet.from_official_state_dict(misshapen, "model.pth")
    path = write_official_pth(tmp_path / "model.pth", missing)
    with pytest.raises(CheckpointError, match="missing 1 keys"):
        load_model(path)


@pytest.mark.filterwarnings("ignore:.*meta parameter")
def test_a_file_of_another_preset_says_which_it_looks_like():
    state = zeros_of("denoise")
    with torch.device("meta"), pytest.raises(
            CheckpointError, match=r"model_denoising.pth does not fit.*shape mismatches.*look like the denoise preset "
                                   r"\(n_feat 80, scale_unetfeats 48, scale_orsnetfeats 32, num_cab 8\); the model "
                                   r"asked for has the deblur preset's sizes \(n_feat 96"):
        MPRNet.from_official_state_dict(state, "model_denoising.pth", task="deblur", config="deblur")
    del state["stage3_orsnet.orb2.body.3.CA.conv_du.2.weight"]
    with torch.device("meta"), pytest.raises(CheckpointError, match=r"missing 1 keys.*look like the denoise preset"):
        MPRNet.from_official_state_dict(state, "model_denoising.pth")


def test_nan_weights_are_refused_in_every_format(tmp_path, tiny):
    state = tiny.state_dict()
    state["stage3_orsnet.orb1.body.1.weight"] = torch.full_like(state["stage3_orsnet.orb1.body.1.weight"], float("nan"))
    files = [write_official_pth(tmp_path / "model_deblurring.pth", state),
             write_pdparams(tmp_path / "MPR_Deblurring.pdparams", state)]
    ours = model_payload(tiny)
    ours["state_dict"] = state
    torch.save(ours, tmp_path / "ours.pt")
    files.append(tmp_path / "ours.pt")
    for path in files:
        with pytest.raises(CheckpointError, match="NaN or Inf.*stage3_orsnet.orb1.body.1.weight"):
            load_model(path)


def test_shared_prelu_keys_must_agree(tiny):
    state = tiny.state_dict()
    state["stage2_decoder.skip_attn1.body.1.weight"] = torch.tensor([0.7])
    with pytest.raises(CheckpointError, match=r"the 34 keys of MPRNet's shared PReLU slope hold 2 different values "
                                              r"\(shallow_feat1.1.body.1.weight = 0.1, "
                                              r"stage2_decoder.skip_attn1.body.1.weight = 0.7\)"):
        MPRNet.from_official_state_dict(state, "model.pth")
    ours = model_payload(tiny)
    ours["state_dict"] = state
    with pytest.raises(CheckpointError, match="shared PReLU"):
        MPRNet.from_payload(ours, "ours.pt")


def test_each_loader_says_which_file_it_takes(tmp_path, tiny):
    official = write_official_pth(tmp_path / "model_deblurring.pth", tiny.state_dict())
    ours = tmp_path / "ours.pt"
    tiny.save(ours)
    with pytest.raises(CheckpointError, match="not a checkpoint of this toolkit.*MPRNet.load_official"):
        MPRNet.load(official)
    with pytest.raises(CheckpointError, match="not an official file: use MPRNet.load"):
        MPRNet.load_official(ours)


def test_ipt_and_mprnet_files_are_told_apart(tmp_path, tiny):
    torch.manual_seed(0)
    ipt_model = IPT(["sr2"], "tiny")
    ipt_official, ipt_ours = tmp_path / "IPT_sr2.pt", tmp_path / "ipt.pt"
    torch.save(ipt_model.state_dict(), ipt_official)
    ipt_model.save(ipt_ours)
    mpr_official = write_official_pth(tmp_path / "model_deblurring.pth", tiny.state_dict())
    mpr_ours = tmp_path / "mprnet.pt"
    tiny.save(mpr_ours)

    with pytest.raises(CheckpointError, match="not an MPRNet state_dict.*holds an IPT model.*--model ipt"):
        MPRNet.load_official(ipt_official)
    with pytest.raises(CheckpointError, match="'mprnet' family, not 'ipt'"):
        ipt.model.load_model(mpr_ours)
    with pytest.raises(CheckpointError, match="not an IPT checkpoint"):
        ipt.model.load_model(mpr_official)

    assert isinstance(load_model(ipt_official, num_heads=2), IPT) and isinstance(load_model(ipt_ours), IPT)
    for path in (mpr_official, mpr_ours):
        assert isinstance(load_model(path), MPRNet)
        with pytest.raises(CheckpointError, match="holds an MPRNet model, not an IPT one: use --model mprnet"):
            load_model(path, family="ipt")
    with pytest.raises(CheckpointError, match="holds an IPT model, not an MPRNet one: use --model ipt"):
        load_model(ipt_official, family="mprnet")


def test_load_model_checks_the_task_and_options(tmp_path, tiny):
    path = write_official_pth(tmp_path / "model_deblurring.pth", tiny.state_dict())
    with pytest.raises(CheckpointError, match="scale 1"):
        load_model(path, task="sr2")
    with pytest.raises(ConfigError, match="no attention heads"):
        load_model(path, num_heads=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not an official preset: no warning for another kind
        model = load_model(path, task="noise30", num_heads=None)
    assert model.task_names == ["noise30"]
