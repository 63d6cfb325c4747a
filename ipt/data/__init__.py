"""Data: image files and the built-in sample photographs."""

from .images import IMAGE_SUFFIXES, UnreadableImageError, list_images, read_image, to_rgb_uint8, write_image
from .samples import SAMPLE_NAMES, sample_image, sample_images_dir

__all__ = ["IMAGE_SUFFIXES", "UnreadableImageError", "list_images", "read_image", "to_rgb_uint8", "write_image",
           "SAMPLE_NAMES", "sample_image", "sample_images_dir"]
