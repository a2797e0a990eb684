"""Images in prompts: where an image value points, its pixel size, and what it costs in tokens.

An image value is a file path (relative to the input file's folder), an `http(s)://` URL or a
`data:` URL. Sizes are read from the first bytes of the file (PNG, JPEG, GIF and WebP headers),
so checking a million images reads a few kilobytes of each, never the pictures.

Token estimates, per provider family (used by `estimate`, the tokens/min reservation and the
budget; the provider's own count settles each answer):

    openai, responses   detail "low": 85. Otherwise ("high", "auto"): the image is scaled to fit
                        2048 x 2048, then its short side to 768; 85 + 170 per 512-pixel tile.
    anthropic           width x height / 750, after scaling the long side to at most 1568
                        pixels and the area to at most that of 1092 x 1092 (1,590 at most).
    unknown size        (an http URL, which is not fetched): FALLBACK_TOKENS, the largest of
                        the two rules, so reservations and budgets err high.
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
from dataclasses import dataclass
from pathlib import Path

FALLBACK_TOKENS = 1_600
HEADER_BYTES = 64 * 1024  # enough for any JPEG's frame header after its metadata
_ANTHROPIC_AREA = 1092 * 1092  # the largest image Anthropic's sizing table sends unscaled


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """What an image is: its media type and pixel size (None when it was not read)."""

    media_type: str | None
    width: int | None
    height: int | None


UNKNOWN = ImageInfo(None, None, None)  # an http(s) URL: batchrun never fetches it


def sniff(head: bytes) -> ImageInfo | None:
    """The type and size in an image file's first bytes; None when it is no image we know."""
    if head.startswith(b"\x89PNG\r\n\x1a\n") and len(head) >= 24:
        width, height = struct.unpack(">II", head[16:24])
        return ImageInfo("image/png", width, height)
    if head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
        width, height = struct.unpack("<HH", head[6:10])
        return ImageInfo("image/gif", width, height)
    if head.startswith(b"\xff\xd8"):
        return _jpeg(head)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return _webp(head)
    return None


def _jpeg(head: bytes) -> ImageInfo | None:
    at = 2
    while at + 9 < len(head):
        if head[at] != 0xFF:
            return None
        marker = head[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        length = struct.unpack(">H", head[at + 2 : at + 4])[0]
        # Start-of-frame markers carry the size; C4 (Huffman), C8 and CC (arithmetic) do not.
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", head[at + 5 : at + 9])
            return ImageInfo("image/jpeg", width, height)
        at += 2 + length
    return ImageInfo("image/jpeg", None, None)  # a valid start, the frame header further on


def _webp(head: bytes) -> ImageInfo | None:
    chunk = head[12:16]
    if chunk == b"VP8 " and len(head) >= 30:
        width, height = struct.unpack("<HH", head[26:30])
        return ImageInfo("image/webp", width & 0x3FFF, height & 0x3FFF)
    if chunk == b"VP8L" and len(head) >= 25:
        bits = int.from_bytes(head[21:25], "little")
        return ImageInfo("image/webp", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if chunk == b"VP8X" and len(head) >= 30:
        width = int.from_bytes(head[24:27], "little") + 1
        height = int.from_bytes(head[27:30], "little") + 1
        return ImageInfo("image/webp", width, height)
    return None


def is_url(value: str) -> bool:
    """An http(s) URL, sent as it is and never fetched by batchrun."""
    return value.startswith(("http://", "https://"))


def data_url_bytes(value: str) -> bytes:
    """The bytes of a base64 `data:` URL; ValueError when it is not one."""
    header, sep, payload = value.partition(",")
    if not sep or not header.startswith("data:") or not header.endswith(";base64"):
        raise ValueError("a data: URL must be base64 (data:image/png;base64,...)")
    try:
        return base64.b64decode(payload, validate=True)
    except binascii.Error as err:
        raise ValueError(f"its base64 does not decode ({err})") from None


def read_info(value: str, base_dir: Path) -> ImageInfo:
    """Check an image value and read its type and size; ValueError says what is wrong."""
    if is_url(value):
        return UNKNOWN
    if value.startswith("data:"):
        head = data_url_bytes(value)[:HEADER_BYTES]
    else:
        path = base_dir / value
        try:
            with path.open("rb") as handle:
                head = handle.read(HEADER_BYTES)
        except FileNotFoundError:
            raise ValueError(f"no such image file: {path}") from None
        except OSError as err:
            raise ValueError(f"cannot read image {path} ({err.strerror})") from None
    info = sniff(head)
    if info is None:
        raise ValueError("not a PNG, JPEG, GIF or WebP image")
    return info


def data_url(value: str, base_dir: Path) -> str:
    """The value as it is sent: URLs unchanged, a file as a base64 `data:` URL (read now)."""
    return load(value, base_dir)[0]


def load(value: str, base_dir: Path) -> tuple[str, ImageInfo]:
    """The value as it is sent and what it is; a file is read now, into a base64 `data:` URL.

    Raises OSError when a file cannot be read, ValueError when it is no image we know.
    """
    if is_url(value):
        return value, UNKNOWN
    if value.startswith("data:"):
        return value, data_url_info(value)
    raw = (base_dir / value).read_bytes()
    info = sniff(raw[:HEADER_BYTES])
    if info is None or info.media_type is None:
        raise ValueError("not a PNG, JPEG, GIF or WebP image")
    return f"data:{info.media_type};base64,{base64.b64encode(raw).decode('ascii')}", info


def data_url_info(value: str) -> ImageInfo:
    """What a `data:` URL holds, decoding only its first bytes; UNKNOWN when it does not decode."""
    payload = value.partition(",")[2]
    # Base64 turns 3 bytes into 4 characters: this many characters hold HEADER_BYTES bytes.
    try:
        head = base64.b64decode(payload[: HEADER_BYTES // 3 * 4])
    except binascii.Error:
        return UNKNOWN
    return sniff(head) or UNKNOWN


def image_tokens(info: ImageInfo, family: str, detail: str | None = None) -> int:
    """Estimated prompt tokens of one image for a provider family (see the module docstring)."""
    width, height = info.width, info.height
    if not width or not height:
        return 85 if family != "anthropic" and detail == "low" else FALLBACK_TOKENS
    if family == "anthropic":
        scale = min(1.0, 1568 / max(width, height), math.sqrt(_ANTHROPIC_AREA / (width * height)))
        return max(1, math.ceil(width * scale * height * scale / 750))
    if detail == "low":
        return 85
    fit = min(1.0, 2048 / max(width, height))
    fit *= min(1.0, 768 / (min(width, height) * fit))
    return 85 + 170 * math.ceil(width * fit / 512) * math.ceil(height * fit / 512)


__all__ = [
    "FALLBACK_TOKENS",
    "UNKNOWN",
    "ImageInfo",
    "data_url",
    "data_url_info",
    "image_tokens",
    "is_url",
    "load",
    "read_info",
    "sniff",
]
