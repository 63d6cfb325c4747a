"""IPT toolkit: pretrain and serve the Image Processing Transformer with fused data-path kernels."""

__version__ = "0.1.0"
