"""MPRNet: the official layout (keys, shapes, parameter counts), the shared PReLU, the forward pass (padding,
patches per stage), configs, and the family's answers to the shared pieces."""

import json
import types
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from ipt.errors import ConfigError
from ipt.families import get_family
from ipt.model.checkpoint import CheckpointError
from ipt.mprnet import PRESET_KINDS, PRESETS, MPRNet, MPRNetConfig, get_config
from ipt.mprnet.family import DEFAULT_OVERLAP, DEFAULT_TILE, FAMILY
from ipt.mprnet.network import ChannelAttentionBlock, Downsample, SupervisedAttention, reflection_indices
from ipt.tasks import get_task

# Keys and shapes of the official networks' state_dicts, recorded once from swz30/MPRNet's <Task>/MPRNet.py.
OFFICIAL = json.loads((Path(__file__).parent / "data" / "mprnet_official_keys.json").read_text())["presets"]
TOP_LEVEL = {"shallow_feat1", "shallow_feat2", "shallow_feat3", "stage1_encoder", "stage1_decoder", "stage2_encoder",
             "stage2_decoder", "stage3_orsnet", "sam12", "sam23", "concat12", "concat23", "tail"}
COUNTS = {"deblur": 20_127_073, "denoise": 15_741_025, "derain": 3_637_249}


def meta_model(preset: str, task: str = "deblur") -> MPRNet:
    """A full-size network without memory or initialisation cost (shapes only)."""
    with torch.device("meta"):
        return MPRNet(task, preset)


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    model = MPRNet("deblur", "tiny")
    with torch.no_grad():
        model.shared_prelu.weight.fill_(0.1)  # a slope of its own, so that a lost PReLU would show
    return model


# --- layout ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", ["deblur", "denoise", "derain"])
def test_official_keys_shapes_and_parameter_counts(preset):
    model = meta_model(preset)
    state = model.state_dict()
    assert {k: list(v.shape) for k, v in state.items()} == OFFICIAL[preset]["shapes"]
    assert len(state) == 316
    assert {k.split(".")[0] for k in state} == TOP_LEVEL
    # parameters() lists the shared PReLU slope once, as the official count does
    assert sum(p.numel() for p in model.parameters()) == COUNTS[preset] == OFFICIAL[preset]["parameters"]
    config = PRESETS[preset]
    assert (config.n_feat, config.scale_unetfeats, config.scale_orsnetfeats, config.num_cab) == (
        OFFICIAL[preset]["n_feat"], OFFICIAL[preset]["scale_unetfeats"], OFFICIAL[preset]["scale_orsnetfeats"], 8)


def test_small_presets_are_small():
    counts = {name: sum(p.numel() for p in meta_model(name).parameters()) for name in ("small", "tiny")}
    assert counts == {"small": 99_301, "tiny": 25_687}
    assert counts["small"] < 100_000


def test_one_prelu_is_shared_by_every_block(tiny):
    full = meta_model("deblur")
    assert len(full.shared_prelu_keys()) == 55  # 3 shallow + 2 x (6 + 8) U-Net + 3 x 8 ORSNet blocks
    state = tiny.state_dict(keep_vars=True)
    slope_keys = [k for k in state if k.endswith("body.1.weight") and state[k].shape == (1,)]
    assert slope_keys == tiny.shared_prelu_keys()
    assert len(slope_keys) == 34  # 3 + 2 x 14 + 3 x 1 for num_cab 1
    assert all(state[k] is tiny.shared_prelu.weight for k in slope_keys)
    assert sum(p is tiny.shared_prelu.weight for p in tiny.parameters()) == 1

    optimizer = torch.optim.SGD(tiny.parameters(), lr=1.0)
    tiny(torch.rand(1, 3, 16, 16))[0].square().mean().backward()
    assert tiny.shared_prelu.weight.grad.abs().item() > 0
    optimizer.step()
    after = tiny.state_dict()
    (value,) = {after[k].item() for k in slope_keys}  # one value under every key
    assert value != pytest.approx(0.1)


# --- building blocks against direct computations -------------------------------------------------------------


def test_channel_attention_block_computes_the_official_formula():
    torch.manual_seed(1)
    act = torch.nn.PReLU(init=0.3)
    block = ChannelAttentionBlock(8, get_config("tiny"), act)
    x = torch.randn(2, 8, 5, 7)
    body0, body2 = block.body[0].weight, block.body[2].weight
    squeeze, excite = block.CA.conv_du[0].weight, block.CA.conv_du[2].weight
    res = F.conv2d(F.prelu(F.conv2d(x, body0, padding=1), torch.tensor([0.3])), body2, padding=1)
    means = res.sum(dim=(2, 3)) / (5 * 7)  # (2, 8)
    gate = torch.sigmoid(torch.relu(means @ squeeze[:, :, 0, 0].T) @ excite[:, :, 0, 0].T)
    expected = x + res * gate[:, :, None, None]
    torch.testing.assert_close(block(x), expected, rtol=1e-5, atol=1e-6)


def test_downsampling_averages_two_by_two_blocks():
    torch.manual_seed(2)
    down = Downsample(3, 2)
    x = torch.randn(1, 3, 6, 8)
    averaged = x.reshape(1, 3, 3, 2, 4, 2).mean(dim=(3, 5))
    expected = torch.einsum("oc,bchw->bohw", down.down[1].weight[:, :, 0, 0], averaged)
    torch.testing.assert_close(down(x), expected, rtol=1e-5, atol=1e-6)
    assert down.down[1].weight.shape == (5, 3, 1, 1)


def test_supervised_attention_adds_the_input_image():
    torch.manual_seed(3)
    sam = SupervisedAttention(4, 3, bias=False)
    features, image = torch.randn(1, 4, 3, 3), torch.randn(1, 3, 3, 3)
    out, restored = sam(features, image)
    w1, w2, w3 = (sam.conv1.weight[:, :, 0, 0], sam.conv2.weight[:, :, 0, 0], sam.conv3.weight[:, :, 0, 0])
    expected_image = torch.einsum("oc,bchw->bohw", w2, features) + image
    gate = torch.sigmoid(torch.einsum("oc,bchw->bohw", w3, expected_image))
    torch.testing.assert_close(restored, expected_image)
    torch.testing.assert_close(out, torch.einsum("oc,bchw->bohw", w1, features) * gate + features)


# --- forward ---------------------------------------------------------------------------------------------


def reference_forward(model: MPRNet, x: torch.Tensor) -> list[torch.Tensor]:
    """The official forward pass, one patch at a time, from the model's own modules (sides multiples of 8)."""
    height, width = x.shape[-2:]
    top, bottom = x[:, :, : height // 2], x[:, :, height // 2:]

    def encode_quarter(quarter):
        return model.stage1_encoder(model.shallow_feat1(quarter))

    stage1, handed, encoded1, decoded1 = [], [], [], []
    for half in (top, bottom):
        left, right = encode_quarter(half[..., : width // 2]), encode_quarter(half[..., width // 2:])
        features = [torch.cat([a, b], 3) for a, b in zip(left, right)]
        decoded = model.stage1_decoder(features)
        gated, image = model.sam12(decoded[0], half)
        stage1.append(image)
        handed.append(gated)
        encoded1.append(features)
        decoded1.append(decoded)
    encoded2 = []
    for half, gated, enc, dec in zip((top, bottom), handed, encoded1, decoded1):
        features = model.concat12(torch.cat([model.shallow_feat2(half), gated], 1))
        encoded2.append(model.stage2_encoder(features, (enc, dec)))
    encoded2 = [torch.cat([a, b], 2) for a, b in zip(*encoded2)]
    decoded2 = model.stage2_decoder(encoded2)
    gated, stage2 = model.sam23(decoded2[0], x)
    features = model.concat23(torch.cat([model.shallow_feat3(x), gated], 1))
    features = model.stage3_orsnet(features, encoded2, decoded2)
    return [model.tail(features) + x, stage2, torch.cat(stage1, 2)]


def test_forward_matches_the_patchwise_official_pass(tiny):
    x = torch.rand(2, 3, 16, 24)
    with torch.no_grad():
        ours, reference = tiny(x), reference_forward(tiny, x)
    assert len(ours) == 3
    for a, b in zip(ours, reference):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_stage1_sees_each_half_of_the_image_alone(tiny):
    x = torch.rand(1, 3, 16, 16)
    changed = x.clone()
    changed[:, :, 8:] = torch.rand(1, 3, 8, 16)  # the bottom half only
    with torch.no_grad():
        before, after = tiny(x), tiny(changed)
    torch.testing.assert_close(after[2][:, :, :8], before[2][:, :, :8], rtol=0, atol=0)  # stage 1, top half
    assert (after[2][:, :, 8:] - before[2][:, :, 8:]).abs().max() > 1e-4
    assert (after[1][:, :, :8] - before[1][:, :, :8]).abs().max() > 1e-6  # stage 2 decodes the whole image
    assert (after[0][:, :, :8] - before[0][:, :, :8]).abs().max() > 1e-6


def test_stage1_encodes_each_quarter_alone(tiny):
    seen = []
    hook = tiny.stage1_encoder.register_forward_hook(lambda module, args, out: seen.append(args[0]))
    x = torch.rand(1, 3, 16, 24)
    with torch.no_grad():
        tiny(x)
    hook.remove()
    (quarters,) = seen
    assert quarters.shape[-2:] == (8, 12)  # the encoder only ever sees quarter-sized inputs
    expected = torch.cat([tiny.shallow_feat1(q) for q in (x[..., :8, :12], x[..., 8:, :12], x[..., :8, 12:],
                                                          x[..., 8:, 12:])], 0)
    torch.testing.assert_close(quarters, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("size", [(37, 53), (1, 1), (5, 9), (2, 3), (16, 24)])
def test_outputs_have_the_input_size(tiny, size):
    x = torch.rand(2, 3, *size)
    with torch.no_grad():
        outputs = tiny(x)
    assert [tuple(o.shape) for o in outputs] == [(2, 3, *size)] * 3
    assert all(torch.isfinite(o).all() for o in outputs)


def test_padding_is_reflection_as_the_official_demo(tiny):
    x = torch.rand(1, 3, 13, 11)
    padded = F.pad(x, (0, 5, 0, 3), mode="reflect")  # to 16 x 16, as demo.py pads
    with torch.no_grad():
        ours, theirs = tiny(x), tiny(padded)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b[..., :13, :11], rtol=0, atol=0)


def test_reflection_continues_where_an_image_is_shorter_than_its_padding():
    for size in range(2, 9):
        padded = -(-size // 8) * 8
        if padded - size < size:  # where F.pad's reflection works, the same indices
            expected = F.pad(torch.arange(size, dtype=torch.float)[None, None], (0, padded - size), mode="reflect")
            assert reflection_indices(size, padded, "cpu").tolist() == expected[0, 0].long().tolist()
    assert reflection_indices(1, 8, "cpu").tolist() == [0] * 8
    assert reflection_indices(2, 8, "cpu").tolist() == [0, 1, 0, 1, 0, 1, 0, 1]
    assert reflection_indices(3, 8, "cpu").tolist() == [0, 1, 2, 1, 0, 1, 2, 1]


def test_one_pixel_images_are_restored_as_flat_ones(tiny):
    pixel = torch.rand(1, 3, 1, 1)
    with torch.no_grad():
        ours, flat = tiny(pixel), tiny(pixel.expand(1, 3, 8, 8).contiguous())
    for a, b in zip(ours, flat):
        torch.testing.assert_close(a, b[..., :1, :1], rtol=0, atol=0)


@pytest.mark.parametrize("bad", [torch.rand(3, 16, 16), torch.rand(1, 1, 16, 16), torch.rand(1, 3, 0, 4),
                                 torch.zeros(1, 3, 8, 8, dtype=torch.uint8)])
def test_wrong_inputs_are_clear_errors(tiny, bad):
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)|float images"):
        tiny(bad)


def test_gradients_reach_every_parameter(tiny):
    tiny(torch.rand(1, 3, 16, 16))[0].mean().backward()
    grads = {k: p.grad for k, p in tiny.named_parameters()}
    assert all(g is not None for g in grads.values())  # every module takes part in the restored image
    # (the 2-channel squeezes of the tiny channel attentions may have every ReLU off for an image)
    assert all(g.abs().sum() > 0 for k, g in grads.items() if ".CA." not in k)


# --- tasks and configs -------------------------------------------------------------------------------------


@pytest.mark.parametrize("task, preset", [("deblur", "deblur"), ("denoise", "denoise"), ("noise30", "denoise"),
                                          ("derain", "derain"), ("rain", "derain")])
def test_a_task_gets_the_preset_of_its_kind(task, preset):
    model = meta_model(None, task)
    assert model.config == PRESETS[preset]
    assert model.task_names == [get_task(task).name] and model.family == "mprnet"
    assert FAMILY.default_preset([get_task(task)]) == preset


def test_task_index_takes_any_scale_one_task(tiny):
    for task in (0, "deblur", "noise50", get_task("rain"), "derain"):
        assert tiny.task_index(task) == 0
    for bad in (1, -1, "sr2", get_task("sr4"), True):
        with pytest.raises(ConfigError):
            tiny.task_index(bad)
    with pytest.raises(ConfigError, match="scale 1"):
        tiny(torch.rand(1, 3, 8, 8), "sr3")


def test_models_are_made_for_one_scale_one_task():
    with pytest.raises(ConfigError, match="scale 1"):
        MPRNet("sr2")
    with pytest.raises(ConfigError, match="one task"):
        MPRNet(["deblur", "derain"], "tiny")
    with pytest.raises(ConfigError, match="super-resolution|restores images at their own size"):
        FAMILY.default_preset([get_task("sr2")])


def test_config_validation_names_every_problem():
    with pytest.raises(ConfigError, match="n_feat must be an integer >= 1.*num_cab must be an integer >= 1"):
        MPRNetConfig(n_feat=0, scale_unetfeats=4, scale_orsnetfeats=4, num_cab=0)
    for bad, message in [(dict(kernel_size=2), "odd"), (dict(n_feat=2, reduction=4), "reduction"),
                         (dict(out_c=1), "in_c"), (dict(bias=1), "bias"),
                         (dict(scale_unetfeats=True), "scale_unetfeats")]:
        with pytest.raises(ConfigError, match=message):
            MPRNetConfig(**{"n_feat": 8, "scale_unetfeats": 4, "scale_orsnetfeats": 4, **bad})


def test_config_dicts_round_trip_and_reject_unknown_fields():
    for config in PRESETS.values():
        assert MPRNetConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
        assert get_config(config.to_dict()) == config
    with pytest.raises(ConfigError, match="unknown MPRNetConfig fields.*num_heads"):
        get_config({**PRESETS["tiny"].to_dict(), "num_heads": 4})
    with pytest.raises(ConfigError, match="scale_orsnetfeats.*missing"):
        get_config({"n_feat": 8, "scale_unetfeats": 4})
    with pytest.raises(ConfigError, match="unknown MPRNet config 'huge'"):
        get_config("huge")
    assert set(PRESET_KINDS) == {"deblur", "denoise", "derain"} and get_config("small") is PRESETS["small"]


# --- the family ----------------------------------------------------------------------------------------------


def test_the_family_is_registered():
    family = get_family("mprnet")
    assert family is FAMILY and family.name == "mprnet" and family.presets is PRESETS
    assert family.find_unused_parameters is False and family.loss_names == ("charbonnier", "edge")
    assert isinstance(family.build(["noise30"], "tiny"), MPRNet)
    assert family.get_config("tiny") is PRESETS["tiny"]


def test_train_crop_defaults_to_the_official_crops():
    tiny = PRESETS["tiny"]

    def crop_for(task, crop=None):
        return FAMILY.train_crop(tiny, types.SimpleNamespace(crop=crop, tasks=(task,)))

    assert crop_for("noise30") == crop_for("denoise") == 128
    assert crop_for("deblur") == crop_for("rain") == crop_for("derain") == 256
    assert crop_for("deblur", 64) == 64
    for bad in (60, 0, 4, 64.0, True):
        with pytest.raises(ConfigError, match="multiple of 8"):
            crop_for("deblur", bad)


def test_restoration_fn_works_in_0_255(tiny):
    tiles = torch.rand(2, 3, 16, 16) * 255
    restore = FAMILY.restoration_fn(tiny, get_task("noise30"))
    with torch.no_grad():
        torch.testing.assert_close(restore(tiles), tiny(tiles / 255)[0] * 255)
        # the residual network maps its input close to itself: the scale is [0, 255], not [0, 1]
        assert (restore(tiles) - tiles).abs().mean() < 0.5 * tiles.abs().mean()


def test_tiling_defaults_and_bad_values(tiny):
    assert FAMILY.tiling(tiny, None, None) == {"patch_size": DEFAULT_TILE, "overlap": DEFAULT_OVERLAP, "whole": True}
    assert FAMILY.tiling(tiny, 256, 0) == {"patch_size": 256, "overlap": 0, "whole": True}
    assert FAMILY.tiling(tiny, 64, None)["overlap"] == 32  # the default overlap, at most half a tile
    for tile, overlap in [(8, None), (15, 0), (256, 129), (256, -1), (64.5, 8)]:
        with pytest.raises(ConfigError):
            FAMILY.tiling(tiny, tile, overlap)


def test_check_task_warns_when_an_official_preset_does_another_kind():
    denoiser = meta_model("denoise", "denoise")
    with pytest.warns(UserWarning, match="denoise preset.*'deblur'"):
        FAMILY.check_task(denoiser, get_task("deblur"), "model_denoising.pth")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        FAMILY.check_task(denoiser, get_task("noise30"), "model_denoising.pth")  # the same kind: no warning
        FAMILY.check_task(meta_model("tiny"), get_task("rain"), "mine.pt")  # not an official preset
    with pytest.raises(CheckpointError, match="model_denoising.pth.*scale 1"):
        FAMILY.check_task(denoiser, get_task("sr2"), "model_denoising.pth")


def test_the_family_claims_mprnet_state_dicts_only(tiny):
    state = tiny.state_dict()
    assert FAMILY.claims(state)
    assert FAMILY.claims({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}, "optimizer": {}})
    assert not FAMILY.claims({k: v for k, v in state.items() if not k.startswith("stage3_orsnet.")})
    assert not FAMILY.claims({"head.0.0.weight": torch.zeros(1), "body.linear_encoding.weight": torch.zeros(1)})
    assert not FAMILY.claims([torch.zeros(1)]) and not FAMILY.claims({1: torch.zeros(1)})
    assert FAMILY.official_reader(Path("MPR_Deblurring.pdparams")) is not None
    assert FAMILY.official_reader(Path("model_deblurring.pth")) is None
    with pytest.raises(ConfigError, match="no attention heads"):
        FAMILY.load_official(Path("model.pth"), state, None, num_heads=12)
