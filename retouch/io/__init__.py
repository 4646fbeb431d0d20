"""File input and output: the only layer of retouch that touches files."""

from retouch.io.load import (
    DEFAULT_MAX_PIXELS,
    MAX_PIXELS_VARIABLE,
    SNIFF_BYTES,
    ImageHeader,
    LoadedImage,
    check_image,
    load_image,
    load_image_bytes,
    max_pixels_from_env,
    probe_image,
    readable_text,
    sniff_format,
)
from retouch.io.tables import decode_table, read_table
from retouch.io.write import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    encode_png,
    heatmap_to_uint8,
    write_png,
)

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "MAX_PIXELS_VARIABLE",
    "SNIFF_BYTES",
    "ImageHeader",
    "LoadedImage",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "check_image",
    "decode_table",
    "encode_png",
    "heatmap_to_uint8",
    "load_image",
    "load_image_bytes",
    "max_pixels_from_env",
    "probe_image",
    "read_table",
    "readable_text",
    "sniff_format",
    "write_png",
]
