"""The data package's user-facing errors (ipt.errors.IPTError, so the command-line tools print them as one
line). Also importable from the modules that raise them: ipt.data.folders, ipt.data.images."""

from __future__ import annotations

from ..errors import IPTError


class DataLayoutError(IPTError, ValueError):
    """A data folder or file list that is missing, empty, or has unpaired images."""


class MissingFolderError(DataLayoutError, FileNotFoundError):
    """A data folder that does not exist (a FileNotFoundError too, as list_images raised before)."""


class UnreadableImageError(IPTError, ValueError):
    """A file that is not an image we can decode (missing, truncated, corrupt, or of an unknown kind)."""


class ImageTooLargeError(UnreadableImageError):
    """An image of more pixels than the toolkit reads (ipt.data.images.max_image_pixels): what Pillow calls a
    possible decompression bomb."""
