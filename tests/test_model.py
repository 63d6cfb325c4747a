"""The IPT model: official layout and parameter counts, fused vs plain body, checkpoints."""

import re

import pytest
import torch

from ipt.errors import ConfigError, IPTError
from ipt.model import IPT, CheckpointError, IPTConfig, load_checkpoint, load_model, load_official
from ipt.model.checkpoint import FORMAT, model_payload
from ipt.tasks import TASK_NAMES

SMALL = IPTConfig(n_feats=8, patch_size=12, patch_dim=3, num_heads=2, num_layers=2)


def official_keys(scales, num_layers=12):
    """The state_dict keys of the official checkpoints, written out from SPEC section 1."""
    keys = {"sub_mean.weight", "sub_mean.bias", "add_mean.weight", "add_mean.bias",
            "body.linear_encoding.weight", "body.linear_encoding.bias", "body.query_embed.weight",
            "body.position_encoding.position_ids", "body.position_encoding.pe.weight"}
    keys |= {f"body.mlp_head.{i}.{p}" for i in (0, 3) for p in ("weight", "bias")}
    for n in range(num_layers):
        for part in ("encoder", "decoder"):
            attns = ("self_attn",) if part == "encoder" else ("self_attn", "multihead_attn")
            norms = (1, 2) if part == "encoder" else (1, 2, 3)
            for a in attns:
                keys |= {f"body.{part}.layers.{n}.{a}.in_proj_weight", f"body.{part}.layers.{n}.{a}.out_proj.weight"}
            keys |= {f"body.{part}.layers.{n}.{lin}.{p}" for lin in ("linear1", "linear2") for p in ("weight", "bias")}
            keys |= {f"body.{part}.layers.{n}.norm{k}.{p}" for k in norms for p in ("weight", "bias")}
    for i, s in enumerate(scales):
        keys |= {f"head.{i}.0.{p}" for p in ("weight", "bias")}
        keys |= {f"head.{i}.{b}.body.{c}.{p}" for b in (1, 2) for c in (0, 2) for p in ("weight", "bias")}
        keys |= {f"tail.{i}.1.{p}" for p in ("weight", "bias")}
        ups = {1: [], 2: [0], 3: [0], 4: [0, 2]}[s]
        keys |= {f"tail.{i}.0.{u}.{p}" for u in ups for p in ("weight", "bias")}
    return keys


@pytest.fixture(scope="module")
def sr2_model():
    torch.manual_seed(0)
    return IPT(["sr2"]).eval()


def count(module):
    return sum(p.numel() for p in module.parameters())


def test_official_keys_shapes_and_counts(sr2_model):
    state = sr2_model.state_dict()
    assert set(state) == official_keys([2])
    shapes = {"body.query_embed.weight": (1, 147456), "body.position_encoding.pe.weight": (256, 576),
              "body.position_encoding.position_ids": (1, 256),
              "body.encoder.layers.0.self_attn.in_proj_weight": (1728, 576),
              "body.decoder.layers.11.multihead_attn.out_proj.weight": (576, 576),
              "body.encoder.layers.3.linear1.weight": (2304, 576), "body.mlp_head.3.weight": (576, 2304),
              "head.0.0.weight": (64, 3, 3, 3), "head.0.1.body.0.weight": (64, 64, 5, 5),
              "tail.0.0.0.weight": (256, 64, 3, 3), "tail.0.1.weight": (3, 64, 3, 3)}
    for key, shape in shapes.items():
        assert tuple(state[key].shape) == shape, key
    assert state["body.position_encoding.position_ids"].dtype == torch.int64
    assert count(sr2_model.body) == 114_899_328  # the paper's "114M"
    assert count(sr2_model) == 115_460_443


@pytest.mark.parametrize("task, expected", [("sr3", 115_645_083), ("sr4", 115_608_155), ("noise30", 115_312_731),
                                            ("noise50", 115_312_731), ("rain", 115_312_731)])
def test_single_task_parameter_counts(task, expected):
    model = IPT([task])
    assert count(model) == expected
    assert set(model.state_dict()) == official_keys([model.tasks[0].scale])


def test_six_task_pretraining_model():
    model = IPT(TASK_NAMES)
    assert count(model) == 118_892_394
    assert set(model.state_dict()) == official_keys([2, 3, 4, 1, 1, 1])
    assert model.body.query_embed.weight.shape == (6, 147456)


def test_mean_shift_is_frozen_and_exact(sr2_model):
    assert not sr2_model.sub_mean.weight.requires_grad
    torch.testing.assert_close(sr2_model.sub_mean.bias, -255 * torch.tensor([0.4488, 0.4371, 0.4040]))
    x = torch.rand(1, 3, 4, 4) * 255
    torch.testing.assert_close(sr2_model.add_mean(sr2_model.sub_mean(x)), x)


def test_output_shapes_per_task():
    model = IPT(["sr2", "sr3", "sr4", "noise30"], SMALL).eval()
    x = torch.rand(2, 3, 12, 12) * 255
    with torch.no_grad():
        for task, size in (("sr2", 24), ("sr3", 36), (2, 48), ("noise30", 12)):
            assert model(x, task).shape == (2, 3, size, size)
        out, features = model(x, "sr3", return_features=True)
    assert features.shape == (2, SMALL.num_tokens, SMALL.embedding_dim)


def test_fused_and_plain_paths_agree_full_model(sr2_model):
    x = torch.rand(2, 3, 48, 48, generator=torch.Generator().manual_seed(1)) * 255
    with torch.no_grad():
        sr2_model.fused = True
        fused = sr2_model(x)
        sr2_model.fused = False
        plain = sr2_model(x)
        sr2_model.fused = True
    # A randomly initialised 24-layer network amplifies float32 rounding to ~1e-4 of its output in any
    # path (see the float64 test below); norm-wise the two paths agree well within 1e-4.
    assert ((fused - plain).norm() / plain.norm()).item() < 1e-4


def test_fused_algebra_is_exact_in_float64():
    torch.manual_seed(3)
    model = IPT(["sr2"], IPTConfig(num_layers=2)).double().eval()
    x = torch.rand(2, 3, 48, 48, dtype=torch.float64) * 255
    with torch.no_grad():
        fused = model(x)
        model.fused = False
        plain = model(x)
    torch.testing.assert_close(fused, plain, rtol=1e-11, atol=1e-9)


def test_fused_and_plain_gradients_agree():
    torch.manual_seed(4)
    model = IPT(["sr2", "noise30"], IPTConfig(n_feats=16, patch_size=24, num_heads=4, num_layers=2))
    x = torch.rand(2, 3, 24, 24) * 255
    grads = []
    for fused in (True, False):
        model.zero_grad()
        model.fused = fused
        out, features = model(x, "noise30", return_features=True)
        (out.square().mean() + features.square().mean()).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and "body.position_encoding.pe.weight" in grads[0]
    for name in grads[0]:  # norm-wise: fp32 rounding differs between the paths (see above)
        a, b = grads[0][name], grads[1][name]
        assert ((a - b).norm() / b.norm()).item() < 2e-4, name


def test_bf16_autocast_and_compile():
    torch.manual_seed(5)
    model = IPT(["sr2"], SMALL).eval()
    x = torch.rand(2, 3, 12, 12) * 255
    with torch.no_grad():
        reference = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x)
        compiled = torch.compile(model, fullgraph=True)(x)
    assert ((low.float() - reference).norm() / reference.norm()) < 0.02
    torch.testing.assert_close(compiled, reference, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_checkpoint_roundtrip(tmp_path, suffix):
    torch.manual_seed(6)
    model = IPT(["sr4", "noise50"], SMALL).eval()
    path = tmp_path / f"model{suffix}"
    model.save(path)
    again = load_checkpoint(path)
    assert again.task_names == ["sr4", "noise50"] and again.config == SMALL
    x = torch.rand(1, 3, 12, 12) * 255
    with torch.no_grad():
        for task in ("sr4", "noise50"):
            assert torch.equal(again(x, task), model(x, task))
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write cleaned up


def test_subset_keeps_one_task():
    torch.manual_seed(7)
    model = IPT(TASK_NAMES, SMALL).eval()
    single = model.subset(["noise30"])
    assert single.task_names == ["noise30"] and single.body.query_embed.weight.shape[0] == 1
    x = torch.rand(1, 3, 12, 12) * 255
    with torch.no_grad():
        assert torch.equal(single(x, 0), model(x, "noise30"))
    single.body.query_embed.weight.data.zero_()
    assert model.body.query_embed.weight.abs().sum() > 0  # nothing shared


# --- official files ---------------------------------------------------------------------------------------------


def _official_file(tmp_path, name, tasks, config=SMALL):
    torch.manual_seed(8)
    model = IPT(tasks, config).eval()
    path = tmp_path / name
    torch.save(model.state_dict(), path)  # the official files are plain state_dicts
    return model, path


@pytest.mark.parametrize("name, task", [("IPT_sr3.pt", "sr3"), ("IPT_denoise30.pt", "noise30"),
                                        ("IPT_denoise50.pt", "noise50"), ("IPT_derain.pt", "rain")])
def test_load_official_single_task_files(tmp_path, name, task):
    model, path = _official_file(tmp_path, name, [task])
    loaded = load_official(path, config=SMALL)
    assert loaded.task_names == [task]
    x = torch.rand(1, 3, 12, 12) * 255
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_load_official_full_size_is_strict_and_inferred(tmp_path, sr2_model):
    path = tmp_path / "IPT_sr2.pt"
    torch.save(sr2_model.state_dict(), path)
    loaded = IPT.load_official(path)  # the paper's layout: the released files, 12 heads (SPEC section 1)
    assert loaded.config == IPTConfig(n_feats=64, patch_size=48, patch_dim=3, num_heads=12, num_layers=12)
    assert loaded.task_names == ["sr2"]
    for key, value in sr2_model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)


def test_the_head_count_of_an_official_file_is_required_not_guessed(tmp_path):
    # The head count changes no weight shape: a 2-head model's weights load "strictly" into a 12-head
    # model (72 = 8 * 3^2 divides by both), which then computes something else.
    two_heads = IPTConfig(n_feats=8, patch_size=12, patch_dim=3, num_heads=2, num_layers=2)
    model, path = _official_file(tmp_path, "IPT_sr2.pt", ["sr2"], two_heads)
    with pytest.raises(CheckpointError, match=r"do not store the number of attention heads.*num_heads=H"):
        load_official(path)
    with pytest.raises(CheckpointError, match="n_feats 8, patch_dim 3, patch_size 12, 2 layers"):
        load_model(path)  # the message says what the file holds
    x = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(9)) * 255
    with torch.no_grad():
        expected = model(x)
        right = load_official(path, num_heads=2)
        assert right.config == two_heads
        assert torch.equal(right(x), expected)
        assert torch.equal(load_model(path, num_heads=2)(x), expected)
        assert torch.equal(IPT.load_official(path, num_heads=2)(x), expected)
        wrong = load_official(path, num_heads=12)  # loads strictly, yet is another model
        assert ((wrong(x) - expected).abs().max() > 1).item()
    with pytest.raises(ConfigError, match="contradicts config.num_heads=2"):
        load_official(path, config=two_heads, num_heads=12)
    with pytest.raises(CheckpointError, match="must be divisible by num_heads 5"):
        load_official(path, num_heads=5)


def test_load_official_pretrain_file(tmp_path):
    model, path = _official_file(tmp_path, "IPT_pretrain.pt", TASK_NAMES)
    loaded = load_official(path, config=SMALL)
    assert loaded.task_names == list(TASK_NAMES)
    x = torch.rand(1, 3, 12, 12) * 255
    with torch.no_grad():
        assert torch.equal(loaded(x, "sr4"), model(x, "sr4"))


def test_training_checkpoints_load_as_their_model(tmp_path):
    # Any dict whose "model" entry is one of our payloads (a training checkpoint bundles optimizer and
    # RNG states with it) loads as that model; the reader knows nothing of what else the file holds.
    torch.manual_seed(10)
    model = IPT(["sr2"], SMALL).eval()
    path = tmp_path / "step_00000100.pt"
    torch.save({"format": "something-else", "model": model_payload(model), "optimizer": {"step": 3}}, path)
    x = torch.rand(1, 3, 12, 12) * 255
    with torch.no_grad():
        for loaded in (load_model(path), load_checkpoint(path)):
            assert loaded.task_names == ["sr2"] and loaded.config == SMALL
            assert torch.equal(loaded(x), model(x))
    plain = tmp_path / "plain.pt"  # a "model" entry that is a bare state_dict is an official-style file
    torch.save({"model": model.state_dict()}, plain)
    assert load_official(plain, num_heads=SMALL.num_heads).task_names == ["sr2"]
    assert model_payload(model)["format"] == FORMAT


def test_official_file_with_module_prefix(tmp_path):
    model, _ = _official_file(tmp_path, "x.pt", ["sr2"])
    path = tmp_path / "wrapped.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, path)
    assert load_official(path, task="sr2", config=SMALL).task_names == ["sr2"]


def test_official_errors_are_clear(tmp_path):
    _, ambiguous = _official_file(tmp_path, "weights.pt", ["noise30"])
    with pytest.raises(CheckpointError, match="scale-1 task .* task='noise30', 'noise50' or 'rain'"):
        load_official(ambiguous, config=SMALL)
    _, sr3 = _official_file(tmp_path, "IPT_sr3.pt", ["sr3"])
    with pytest.raises(CheckpointError, match="task 'sr2' needs a x2 tail but the file's tail is x3"):
        load_official(sr3, task="sr2", config=SMALL)
    model, _ = _official_file(tmp_path, "y.pt", ["sr2"])
    state = model.state_dict()
    del state["body.encoder.layers.1.norm2.weight"]
    state["body.extra.weight"] = torch.zeros(3)
    broken = tmp_path / "IPT_sr2.pt"
    torch.save(state, broken)
    with pytest.raises(CheckpointError, match=r"missing 1 keys .*norm2.weight.*unexpected 1 keys .*body.extra.weight"):
        load_official(broken, config=SMALL)
    not_ipt = tmp_path / "other.pt"
    torch.save({"conv.weight": torch.zeros(3)}, not_ipt)
    with pytest.raises(CheckpointError, match="not an IPT checkpoint"):
        load_official(not_ipt)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_official(tmp_path / "missing.pt")


def test_pickled_objects_are_refused(tmp_path):
    import argparse

    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "obj": argparse.Namespace(run="anything")}, path)  # an arbitrary object
    with pytest.raises(CheckpointError, match="weights only"):
        load_model(path)


def test_load_model_takes_either_format(tmp_path):
    model, official = _official_file(tmp_path, "IPT_sr4.pt", ["sr4"])
    ours = tmp_path / "ours.safetensors"
    model.save(ours)
    assert load_model(ours, "sr4").task_names == ["sr4"]
    with pytest.raises(CheckpointError, match="ours.safetensors: this model has no task 'sr2'"):
        load_model(ours, "sr2")
    with pytest.raises(CheckpointError, match="stores its config, with num_heads 2, not 4"):
        load_model(ours, num_heads=4)
    with pytest.raises(CheckpointError, match="not a checkpoint of this toolkit"):
        load_checkpoint(official)
    with pytest.raises(CheckpointError, match="use IPT.load"):
        load_official(ours)


def test_errors_users_cause_are_config_and_checkpoint_errors():
    # run_main prints IPTErrors as one line; both stay ValueErrors for code that caught those
    assert issubclass(CheckpointError, IPTError) and issubclass(CheckpointError, ValueError)
    assert issubclass(ConfigError, IPTError) and issubclass(ConfigError, ValueError)


def test_bad_configs_and_tasks():
    with pytest.raises(ConfigError, match="must be divisible by num_heads"):
        IPTConfig(n_feats=8, num_heads=5)
    with pytest.raises(ConfigError, match="multiple of patch_dim"):
        IPTConfig(patch_size=50)
    with pytest.raises(ConfigError, match="dropout must be in"):
        IPTConfig(dropout="0.1")
    with pytest.raises(ConfigError, match=r"unknown IPTConfig fields \['heads'\]"):
        IPTConfig.from_dict({"heads": 3})
    with pytest.raises(ConfigError, match="unknown model config"):
        IPT(["sr2"], "huge")
    with pytest.raises(ConfigError, match="duplicate tasks"):
        IPT(["sr2", "sr2"], SMALL)
    with pytest.raises(ConfigError, match="upsample by 1, 2, 3 or a power of two; got scale 5"):
        IPT(["sr5"], SMALL)
    model = IPT(["sr2"], SMALL)
    with pytest.raises(ConfigError, match="no task 'sr3'"):
        model(torch.zeros(1, 3, 12, 12), "sr3")
    with pytest.raises(ConfigError, match="task index 1 is out of range"):
        model(torch.zeros(1, 3, 12, 12), 1)
    # a tensor of the wrong size is a bug of the calling code, not a user's setting: a plain ValueError
    with pytest.raises(ValueError, match=re.escape("takes (8, 12, 12) feature maps, got (8, 16, 16)")) as caught:
        model(torch.zeros(1, 3, 16, 16))
    assert not isinstance(caught.value, IPTError)


def test_scale_of_is_deprecated():
    model = IPT(["sr2", "sr3"], SMALL)
    with pytest.warns(DeprecationWarning, match=r"model.tasks\[model.task_index\(task\)\].scale"):
        assert model.scale_of("sr3") == 3


@pytest.mark.parametrize("name", ["load_checkpoint", "load_model", "load_official"])
def test_loaders_moved_out_of_checkpoint_module_still_import_with_a_warning(name):
    import ipt.model
    import ipt.model.checkpoint as checkpoint

    with pytest.warns(DeprecationWarning, match=f"checkpoint.{name} moved"):
        assert getattr(checkpoint, name) is getattr(ipt.model, name)
