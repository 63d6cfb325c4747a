"""Keeping old argument names working while they are phased out."""

from __future__ import annotations

import functools
import inspect
import warnings


def renamed_keyword(old: str, new: str, hint: str = ""):
    """Decorator: a call that passes `old=` (the argument's former name) still works, with a
    DeprecationWarning, as if it had passed `new=`; passing both is a TypeError. hint: what to pass
    instead, shown after `new=` in the warning (e.g. "model.config.patch_size")."""

    def wrap(fn):
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def call(*args, **kwargs):
            if old in kwargs:
                warnings.warn(f"{fn.__name__}({old}=...) is deprecated; pass {new}={hint or '...'}",
                              DeprecationWarning, stacklevel=2)
                if new in kwargs or new in signature.bind_partial(*args).arguments:
                    raise TypeError(f"{fn.__name__}() got both {new} and its deprecated name {old}; pass {new} only")
                kwargs[new] = kwargs.pop(old)
            return fn(*args, **kwargs)

        return call

    return wrap
