"""NVIDIA DALI data pipelines of the IPT toolkit, installed as `ipt.pipelines`.

DaliLoader reads the images, decodes only each crop (ROI decoding), and flips it and swaps its H and W
axes where the sample's quarter turn needs it (every flip/rotation combination is flips plus an optional
transpose: no rotation warp) with DALI -- on the GPU (nvJPEG, 'mixed' decoding) when a CUDA device is
given, with DALI's CPU operators otherwise -- and yields the same Batch objects, for the same seed, as
ipt.data.loader.TorchLoader. ipt.loaders.make_loader picks between the two.
"""

from .dali import DaliLoader, DaliUnavailableError, dali_available

__all__ = ["DaliLoader", "DaliUnavailableError", "dali_available"]
