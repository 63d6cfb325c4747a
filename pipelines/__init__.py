"""NVIDIA DALI data pipelines of the IPT toolkit, installed as `ipt.pipelines`.

DaliLoader reads, decodes (only the crop: ROI decoding), flips and rotates images with DALI -- on the
GPU (nvJPEG, 'mixed' decoding) when a CUDA device is given, with DALI's CPU operators otherwise -- and
yields the same Batch objects, for the same seed, as ipt.data.loader.TorchLoader.
"""

from .dali import DaliLoader, dali_available

__all__ = ["DaliLoader", "dali_available"]
