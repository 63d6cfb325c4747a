"""IPT toolkit: pretrain and serve the Image Processing Transformer with fused data-path kernels."""

__version__ = "0.1.0"

__all__ = ["Restorer", "__version__"]


def __getattr__(name):
    # ipt.Restorer without importing the model and the kernels for every `import ipt`
    if name == "Restorer":
        from .inference import Restorer

        return Restorer
    raise AttributeError(f"module 'ipt' has no attribute {name!r}")
