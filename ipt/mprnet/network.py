"""MPRNet (Zamir et al., CVPR 2021, swz30/MPRNet): an image restored in three stages, each seeing larger
pieces of it. Stage 1 restores the four quarters of the image, stage 2 its two halves, stage 3 the whole
image at full resolution without any downsampling; each stage hands the next its features, gated by how
its own restored image looks (supervised attention, SAM), and stage 2 also takes in stage 1's U-Net
features (cross-stage feature fusion, CSFF).

Module and parameter names are the official ones, so the release files load strictly (MPRNet.load_official).
One PReLU module is shared by every channel-attention block of the network, as in the official code: the
network has a single trainable PReLU slope, which its state_dict lists under 55 keys (one per block).

    model = MPRNet("deblur")                       # the deblurring preset, random weights
    restored, stage2, stage1 = model(images)       # (B, 3, H, W) in [0, 1], any H and W
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..model import checkpoint
from ..tasks import Task, get_task
from . import official
from .config import MPRNetConfig, get_config, preset_for_kind

# Stage 1 works on quarters of the image, and its U-Net halves their resolution twice: the image's sides
# must be multiples of 2 * 2 * 2. Others are padded up to one (and the outputs cropped back).
SIZE_MULTIPLE = 8


def same_size_conv(in_channels: int, out_channels: int, kernel_size: int, bias: bool = False) -> nn.Conv2d:
    """A convolution whose output has the size of its input (odd kernel sizes)."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)


class Rescale(nn.Module):
    """Bilinear resizing by a fixed factor. It has no weights, but it is a module, at index 0 of the
    resampling Sequentials, because the official code makes it one: the convolution after it is `.1`."""

    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=self.factor, mode="bilinear", align_corners=False)

    def extra_repr(self) -> str:
        return f"factor={self.factor}"


class ChannelAttention(nn.Module):
    """Scales each channel by a gate in (0, 1) computed from the means of all channels (squeeze and
    excitation): a 1x1 convolution to channels // reduction, ReLU, back to channels, sigmoid."""

    def __init__(self, channels: int, reduction: int, bias: bool):
        super().__init__()
        squeezed = channels // reduction
        self.conv_du = nn.Sequential(nn.Conv2d(channels, squeezed, 1, bias=bias), nn.ReLU(inplace=True),
                                     nn.Conv2d(squeezed, channels, 1, bias=bias), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.conv_du(x.mean(dim=(2, 3), keepdim=True))


class ChannelAttentionBlock(nn.Module):
    """The official CAB: conv, PReLU, conv, channel attention, plus the input. `act` is the network's one
    shared PReLU."""

    def __init__(self, channels: int, config: MPRNetConfig, act: nn.PReLU):
        super().__init__()
        k, bias = config.kernel_size, config.bias
        self.CA = ChannelAttention(channels, config.reduction, bias)  # registered first, as the official keys are
        self.body = nn.Sequential(same_size_conv(channels, channels, k, bias), act,
                                  same_size_conv(channels, channels, k, bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.CA(self.body(x))


def attention_blocks(count: int, channels: int, config: MPRNetConfig, act: nn.PReLU) -> list[nn.Module]:
    return [ChannelAttentionBlock(channels, config, act) for _ in range(count)]


class Downsample(nn.Module):
    """Half the resolution, `extra` more channels (bilinear, then a 1x1 convolution without bias)."""

    def __init__(self, channels: int, extra: int):
        super().__init__()
        self.down = nn.Sequential(Rescale(0.5), nn.Conv2d(channels, channels + extra, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(x)


class Upsample(nn.Module):
    """Twice the resolution, down to `channels` from channels + extra (bilinear, 1x1 convolution)."""

    def __init__(self, channels: int, extra: int):
        super().__init__()
        self.up = nn.Sequential(Rescale(2.0), nn.Conv2d(channels + extra, channels, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(x)


def unet_widths(config: MPRNetConfig) -> tuple[int, int, int]:
    """Channels of the three levels of the stage-1/2 U-Nets (full, half, quarter resolution)."""
    n, s = config.n_feat, config.scale_unetfeats
    return n, n + s, n + 2 * s


class UNetEncoder(nn.Module):
    """The encoder of stages 1 and 2: two attention blocks per level, downsampling between levels.
    Stage 2's (cross_stage=True) adds to each level stage 1's encoder and decoder features of that level,
    through 1x1 convolutions (csff_enc<level>, csff_dec<level>)."""

    def __init__(self, config: MPRNetConfig, act: nn.PReLU, cross_stage: bool):
        super().__init__()
        widths = unet_widths(config)
        self.encoder_level1 = nn.Sequential(*attention_blocks(2, widths[0], config, act))
        self.encoder_level2 = nn.Sequential(*attention_blocks(2, widths[1], config, act))
        self.encoder_level3 = nn.Sequential(*attention_blocks(2, widths[2], config, act))
        self.down12 = Downsample(widths[0], config.scale_unetfeats)
        self.down23 = Downsample(widths[1], config.scale_unetfeats)
        self.cross_stage = cross_stage
        if cross_stage:
            for source in ("enc", "dec"):
                for level, width in enumerate(widths, start=1):
                    self.add_module(f"csff_{source}{level}", nn.Conv2d(width, width, 1, bias=config.bias))

    def forward(self, x: torch.Tensor, previous: tuple[list, list] | None = None) -> list[torch.Tensor]:
        """The features of the three levels. previous: stage 1's (encoder features, decoder features),
        which stage 2 needs and stage 1 has not."""
        if self.cross_stage != (previous is not None):
            raise ValueError("stage 2's encoder takes stage 1's features, stage 1's takes none")
        level1 = self._fuse(1, self.encoder_level1(x), previous)
        level2 = self._fuse(2, self.encoder_level2(self.down12(level1)), previous)
        level3 = self._fuse(3, self.encoder_level3(self.down23(level2)), previous)
        return [level1, level2, level3]

    def _fuse(self, level: int, features: torch.Tensor, previous) -> torch.Tensor:
        if previous is None:
            return features
        encoded, decoded = previous
        return (features + getattr(self, f"csff_enc{level}")(encoded[level - 1])
                + getattr(self, f"csff_dec{level}")(decoded[level - 1]))


class UNetDecoder(nn.Module):
    """The decoder of stages 1 and 2: from the coarsest level up, each level's upsampled result plus the
    encoder's features of the next level (through an attention block: skip_attn) feeds two attention blocks."""

    def __init__(self, config: MPRNetConfig, act: nn.PReLU):
        super().__init__()
        widths = unet_widths(config)
        self.decoder_level1 = nn.Sequential(*attention_blocks(2, widths[0], config, act))
        self.decoder_level2 = nn.Sequential(*attention_blocks(2, widths[1], config, act))
        self.decoder_level3 = nn.Sequential(*attention_blocks(2, widths[2], config, act))
        self.skip_attn1 = ChannelAttentionBlock(widths[0], config, act)
        self.skip_attn2 = ChannelAttentionBlock(widths[1], config, act)
        self.up21 = Upsample(widths[0], config.scale_unetfeats)
        self.up32 = Upsample(widths[1], config.scale_unetfeats)

    def forward(self, encoded: list[torch.Tensor]) -> list[torch.Tensor]:
        """The decoder features of the three levels, finest first (the order the encoder's are in)."""
        level3 = self.decoder_level3(encoded[2])
        level2 = self.decoder_level2(self.up32(level3) + self.skip_attn2(encoded[1]))
        level1 = self.decoder_level1(self.up21(level2) + self.skip_attn1(encoded[0]))
        return [level1, level2, level3]


class OriginalResolutionBlock(nn.Module):
    """The official ORB: num_cab attention blocks and a bias-free convolution, plus the input."""

    def __init__(self, channels: int, config: MPRNetConfig, act: nn.PReLU):
        super().__init__()
        self.body = nn.Sequential(*attention_blocks(config.num_cab, channels, config, act),
                                  same_size_conv(channels, channels, config.kernel_size, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class OriginalResolutionSubnet(nn.Module):
    """Stage 3 (the official ORSNet): three ORBs at full resolution; after each, stage 2's encoder and
    decoder features of one U-Net level, upsampled to full resolution, are added through 1x1 convolutions."""

    def __init__(self, config: MPRNetConfig, act: nn.PReLU):
        super().__init__()
        n, s, bias = config.n_feat, config.scale_unetfeats, config.bias
        width = n + config.scale_orsnetfeats
        self.orb1 = OriginalResolutionBlock(width, config, act)
        self.orb2 = OriginalResolutionBlock(width, config, act)
        self.orb3 = OriginalResolutionBlock(width, config, act)
        self.up_enc1 = Upsample(n, s)
        self.up_dec1 = Upsample(n, s)
        self.up_enc2 = nn.Sequential(Upsample(n + s, s), Upsample(n, s))
        self.up_dec2 = nn.Sequential(Upsample(n + s, s), Upsample(n, s))
        for source in ("enc", "dec"):
            for level in (1, 2, 3):
                self.add_module(f"conv_{source}{level}", nn.Conv2d(n, width, 1, bias=bias))

    def forward(self, x: torch.Tensor, encoded: list[torch.Tensor], decoded: list[torch.Tensor]) -> torch.Tensor:
        x = self.orb1(x) + self.conv_enc1(encoded[0]) + self.conv_dec1(decoded[0])
        x = self.orb2(x) + self.conv_enc2(self.up_enc1(encoded[1])) + self.conv_dec2(self.up_dec1(decoded[1]))
        x = self.orb3(x) + self.conv_enc3(self.up_enc2(encoded[2])) + self.conv_dec3(self.up_dec2(decoded[2]))
        return x


class SupervisedAttention(nn.Module):
    """The official SAM: a stage's restored image (features to an image, plus the stage's input image),
    and the features handed to the next stage, gated by a sigmoid of that image's features."""

    def __init__(self, n_feat: int, image_channels: int, bias: bool):
        super().__init__()
        self.conv1 = same_size_conv(n_feat, n_feat, 1, bias)  # 1x1 in the official network
        self.conv2 = same_size_conv(n_feat, image_channels, 1, bias)
        self.conv3 = same_size_conv(image_channels, n_feat, 1, bias)

    def forward(self, features: torch.Tensor, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        restored = self.conv2(features) + image
        gate = torch.sigmoid(self.conv3(restored))
        return self.conv1(features) * gate + features, restored


def reflection_indices(size: int, padded: int, device) -> torch.Tensor:
    """Indices 0..padded-1 into a side of `size` pixels, continued past its end by reflection (without
    repeating the edge pixel, as F.pad's "reflect"). Where the padding is longer than the side, the
    reflection goes on, back and forth between the two ends; a 1-pixel side is repeated."""
    positions = torch.arange(padded, device=device)
    if size == 1:
        return torch.zeros_like(positions)
    period = 2 * (size - 1)
    folded = positions % period
    return torch.where(folded < size, folded, period - folded)


def pad_to_multiple(x: torch.Tensor, multiple: int = SIZE_MULTIPLE) -> torch.Tensor:
    """x padded at the bottom and right to sides that are multiples of `multiple`, by reflection, as the
    official demo pads (where F.pad would refuse, the image being shorter than its padding: see
    reflection_indices)."""
    height, width = x.shape[-2:]
    padded_height, padded_width = -(-height // multiple) * multiple, -(-width // multiple) * multiple
    if (padded_height, padded_width) == (height, width):
        return x
    rows = reflection_indices(height, padded_height, x.device)
    columns = reflection_indices(width, padded_width, x.device)
    return x.index_select(2, rows).index_select(3, columns)


def split_in_two(x: torch.Tensor, dim: int) -> torch.Tensor:
    """The two halves of x along dim (height 2 or width 3), stacked along the batch: (2B, ...)."""
    half = x.shape[dim] // 2
    return torch.cat([x.narrow(dim, 0, half), x.narrow(dim, half, x.shape[dim] - half)], 0)


def join_halves(x: torch.Tensor, dim: int) -> torch.Tensor:
    """The inverse of split_in_two: the batch's first and second halves side by side along dim."""
    first, second = x.chunk(2, 0)
    return torch.cat([first, second], dim)


def _one_task(tasks) -> Task:
    if isinstance(tasks, (str, int, Task)):
        tasks = [tasks]
    tasks = list(tasks)
    if len(tasks) != 1:
        raise ConfigError(f"an MPRNet model restores one task, got {len(tasks)}: {tasks}")
    return get_task(tasks[0])


def _check_scale_one(task: Task) -> None:
    if task.scale != 1:
        raise ConfigError(f"MPRNet restores images at their own size (scale 1); task {task.name!r} is x{task.scale} "
                          "super-resolution (use --model ipt)")


class MPRNet(nn.Module):
    """MPRNet(tasks="deblur", config=None): an MPRNet for one task of scale 1; config: a preset name
    (deblur, denoise, derain, small, tiny), a dict of MPRNetConfig fields or an MPRNetConfig; None: the
    official preset of the task's kind. model(x) maps (B, in_c, H, W) images in [0, 1] (any H, W) to the
    list [restored, stage-2 image, stage-1 image], each (B, in_c, H, W); not clamped."""

    family = "mprnet"  # its model family (ipt.families), recorded in our checkpoints

    def __init__(self, tasks: Sequence[str | Task] | str | Task = ("deblur",),
                 config: str | dict | MPRNetConfig | None = None):
        super().__init__()
        task = _one_task(tasks)
        _check_scale_one(task)
        self.tasks: list[Task] = [task]
        self.config = cfg = get_config(preset_for_kind(task.kind) if config is None else config)
        act = nn.PReLU()  # one slope for the whole network; not an attribute, so no key of its own
        n, bias = cfg.n_feat, cfg.bias
        self.shallow_feat1 = nn.Sequential(same_size_conv(cfg.in_c, n, cfg.kernel_size, bias),
                                           ChannelAttentionBlock(n, cfg, act))
        self.shallow_feat2 = nn.Sequential(same_size_conv(cfg.in_c, n, cfg.kernel_size, bias),
                                           ChannelAttentionBlock(n, cfg, act))
        self.shallow_feat3 = nn.Sequential(same_size_conv(cfg.in_c, n, cfg.kernel_size, bias),
                                           ChannelAttentionBlock(n, cfg, act))
        self.stage1_encoder = UNetEncoder(cfg, act, cross_stage=False)
        self.stage1_decoder = UNetDecoder(cfg, act)
        self.stage2_encoder = UNetEncoder(cfg, act, cross_stage=True)
        self.stage2_decoder = UNetDecoder(cfg, act)
        self.stage3_orsnet = OriginalResolutionSubnet(cfg, act)
        self.sam12 = SupervisedAttention(n, cfg.in_c, bias)
        self.sam23 = SupervisedAttention(n, cfg.in_c, bias)
        self.concat12 = same_size_conv(2 * n, n, cfg.kernel_size, bias)
        self.concat23 = same_size_conv(2 * n, n + cfg.scale_orsnetfeats, cfg.kernel_size, bias)
        self.tail = same_size_conv(n + cfg.scale_orsnetfeats, cfg.out_c, cfg.kernel_size, bias)

    # --- tasks ---------------------------------------------------------------------------------------------

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def task_index(self, task: str | int | Task) -> int:
        """0, for index 0, the model's task or any other task of scale 1. Nothing in the network depends on
        the task (it has no per-task heads, unlike IPT): one network restores whatever it is run on, so a
        deblurring file may be evaluated on a rain task, say; the family warns when an official preset is
        used for another kind (MPRNetFamily.check_task). Super-resolution is a ConfigError."""
        if isinstance(task, int) and not isinstance(task, bool):
            if task != 0:
                raise ConfigError(f"task index {task} is out of range: an MPRNet model has one task, "
                                  f"{self.task_names[0]!r} (index 0)")
            return 0
        if isinstance(task, bool):
            raise ConfigError(f"a task is a name, an index or a Task, not {task!r}")
        _check_scale_one(get_task(task))
        return 0

    # --- the network ---------------------------------------------------------------------------------------

    @property
    def shared_prelu(self) -> nn.PReLU:
        """The network's one PReLU (every channel-attention block's body.1)."""
        return self.shallow_feat1[1].body[1]

    def shared_prelu_keys(self) -> list[str]:
        """The state_dict keys under which the shared PReLU's slope appears (55 for num_cab 8)."""
        slope = self.shared_prelu.weight
        return [k for k, v in self.state_dict(keep_vars=True).items() if v is slope]

    def forward(self, x: torch.Tensor, task: str | int | Task = 0) -> list[torch.Tensor]:
        """[restored, stage-2 image, stage-1 image] of images x (B, in_c, H, W) in [0, 1]. `task` is
        only validated (see task_index): the shared trainer calls every family's model as model(x, task)."""
        self.task_index(task)
        self._check_input(x)
        height, width = x.shape[-2:]
        outputs = self._stages(pad_to_multiple(x))
        return [image[..., :height, :width] for image in outputs]

    def _check_input(self, x) -> None:
        channels = self.config.in_c
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"MPRNet takes a tensor of images (B, {channels}, H, W), not a {type(x).__name__}")
        if x.dim() != 4 or x.shape[1] != channels or x.shape[2] < 1 or x.shape[3] < 1:
            raise ValueError(f"MPRNet takes images as (B, {channels}, H, W) with H, W >= 1, got shape {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"MPRNet takes float images in [0, 1], got {x.dtype}")

    def _stages(self, image: torch.Tensor) -> list[torch.Tensor]:
        """The three stages on an image whose sides are multiples of SIZE_MULTIPLE. The patches of a stage
        are stacked along the batch, so that each shared encoder/decoder runs once over all of them; a
        sample's result does not depend on the others in its batch (no layer mixes samples), so this
        computes what running them one by one (as the official code does) computes."""
        halves = split_in_two(image, dim=2)  # (2B, C, H/2, W): the top halves, then the bottom ones
        quarters = split_in_two(halves, dim=3)  # (4B, C, H/2, W/2): the halves' left quarters, then their right

        # Stage 1: each quarter encoded on its own; each half decoded from its two quarters' features side by side.
        encoded1 = [join_halves(f, dim=3) for f in self.stage1_encoder(self.shallow_feat1(quarters))]
        decoded1 = self.stage1_decoder(encoded1)
        handed1, stage1_halves = self.sam12(decoded1[0], halves)
        stage1_image = join_halves(stage1_halves, dim=2)

        # Stage 2: each half encoded on its own (with stage 1's features of it), the image decoded whole.
        features2 = self.concat12(torch.cat([self.shallow_feat2(halves), handed1], 1))
        encoded2 = [join_halves(f, dim=2) for f in self.stage2_encoder(features2, (encoded1, decoded1))]
        decoded2 = self.stage2_decoder(encoded2)
        handed2, stage2_image = self.sam23(decoded2[0], image)

        # Stage 3: full resolution throughout, taking in stage 2's U-Net features.
        features3 = self.concat23(torch.cat([self.shallow_feat3(image), handed2], 1))
        features3 = self.stage3_orsnet(features3, encoded2, decoded2)
        return [self.tail(features3) + image, stage2_image, stage1_image]

    # --- checkpoints (our format: ipt.model.checkpoint; the official files: ipt.mprnet.official) --------------

    def save(self, path, **extra_metadata) -> None:
        """Family, config, task and weights to path: safetensors unless the name ends in .pt/.pth."""
        checkpoint.save_checkpoint(self, path, **extra_metadata)

    @classmethod
    def from_payload(cls, payload: dict, source: str = "checkpoint") -> "MPRNet":
        """The model one of our payloads describes (ipt.model.checkpoint.model_payload), loaded strictly."""
        checkpoint.check_payload(payload, source, family=cls.family)
        try:
            model = cls(payload["tasks"], MPRNetConfig.from_dict(payload["config"]))
        except (ValueError, TypeError) as error:
            raise checkpoint.CheckpointError(f"{source}: cannot rebuild the MPRNet it describes: {error}") from None
        official.load_weights(model, payload["state_dict"], source,
                              f"tasks {payload['tasks']}, {official.describe_config(model.config)}")
        return model

    @classmethod
    def from_official_state_dict(cls, content, source: str = "state_dict", task=None,
                                 config: str | dict | MPRNetConfig | None = None) -> "MPRNet":
        """The model of an official-style state_dict (see load_official), loaded strictly. Its sizes are read
        off its weights, unless `config` says what the file must hold."""
        state = official.official_state(content, source)
        try:
            found = official.layout_config(state, source)
        except checkpoint.CheckpointError:
            if config is None:
                raise
            found = None  # the strict load below names what does not fit
        wanted = found if config is None else get_config(config)
        if task is None:
            task = official.guess_task(found or wanted, source)
        try:
            model = cls([task], wanted)
        except ConfigError as error:  # a task MPRNet cannot do (super-resolution)
            raise checkpoint.CheckpointError(f"{source}: {error}") from None
        official.load_weights(model, state, source, official.describe_found(found, wanted))
        return model

    @classmethod
    def load(cls, path, map_location="cpu") -> "MPRNet":
        """An MPRNet saved by this toolkit (MPRNet.save, training checkpoints)."""
        kind, content = checkpoint.read_checkpoint(path, map_location)
        if kind != "ours":
            raise checkpoint.CheckpointError(
                f"{path} is not a checkpoint of this toolkit; for MPRNet's release files (model_*.pth, "
                "MPR_*.pdparams) use MPRNet.load_official(path) (or ipt.families.load_model, which takes any)")
        return cls.from_payload(content, str(path))

    @classmethod
    def load_official(cls, path, task=None, map_location="cpu",
                      config: str | dict | MPRNetConfig | None = None) -> "MPRNet":
        """An official release file, loaded strictly: the authors' model_<task>.pth ({'epoch', 'state_dict',
        'optimizer'} or a bare state_dict, "module."-prefixed or not) or PaddleGAN's MPR_<Task>.pdparams.
        Its sizes are read off the weights (the preset they match is named in errors); the task comes from
        `task`, else from the preset, else from the file name (see official.guess_task)."""
        path = Path(path)
        if official.is_pdparams(path):
            content = official.read_pdparams(path, map_location)
        else:
            kind, content = checkpoint.read_checkpoint(path, map_location)
            if kind == "ours":
                raise checkpoint.CheckpointError(
                    f"{path} is a checkpoint of this toolkit, not an official file: use MPRNet.load(path)")
        return cls.from_official_state_dict(content, str(path), task, config)


__all__ = ["MPRNet", "SIZE_MULTIPLE", "pad_to_multiple", "reflection_indices"]
