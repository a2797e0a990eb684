"""Image values: sizes read from file headers, checked before sending, and priced in tokens."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
from PIL import Image

from batchrun.sources.images import (
    FALLBACK_TOKENS,
    ImageInfo,
    data_url,
    image_tokens,
    read_info,
    sniff,
)


def picture(fmt: str, size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    mode = "RGBA" if fmt in ("PNG", "WEBP") else "RGB"
    Image.new(mode, size, (200, 30, 30)).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP"])
@pytest.mark.parametrize("size", [(1, 1), (640, 480), (3000, 17)])
def test_the_size_is_read_from_the_header_of_every_format(fmt: str, size: tuple[int, int]) -> None:
    info = sniff(picture(fmt, size))
    assert info == ImageInfo(f"image/{fmt.lower()}", *size)


def test_a_lossless_webp_and_a_progressive_jpeg_are_read_too() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (321, 123)).save(buffer, format="WEBP", lossless=True)
    assert sniff(buffer.getvalue()) == ImageInfo("image/webp", 321, 123)
    buffer = io.BytesIO()
    Image.new("RGB", (800, 600)).save(buffer, format="JPEG", progressive=True)
    assert sniff(buffer.getvalue()) == ImageInfo("image/jpeg", 800, 600)


def test_files_data_urls_and_http_urls_are_checked_without_fetching(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(picture("PNG", (64, 32)))
    assert read_info("a.png", tmp_path) == ImageInfo("image/png", 64, 32)
    encoded = base64.b64encode(picture("GIF", (5, 7))).decode()
    assert read_info(f"data:image/gif;base64,{encoded}", tmp_path) == ImageInfo("image/gif", 5, 7)
    assert read_info("https://example.com/cat.jpg", tmp_path) == ImageInfo(None, None, None)
    with pytest.raises(ValueError, match="no such image file"):
        read_info("missing.png", tmp_path)
    (tmp_path / "notes.txt").write_text("not a picture")
    with pytest.raises(ValueError, match="not a PNG, JPEG, GIF or WebP"):
        read_info("notes.txt", tmp_path)
    with pytest.raises(ValueError, match="base64"):
        read_info("data:image/png,rawbytes", tmp_path)


def test_a_file_is_sent_as_a_data_url_whose_bytes_round_trip(tmp_path: Path) -> None:
    raw = picture("JPEG", (20, 10))
    (tmp_path / "b.jpg").write_bytes(raw)
    url = data_url("b.jpg", tmp_path)
    assert url.startswith("data:image/jpeg;base64,")
    assert base64.b64decode(url.split(",", 1)[1]) == raw
    assert data_url("https://example.com/x.png", tmp_path) == "https://example.com/x.png"


@pytest.mark.parametrize(("size", "detail", "expected"), [
    ((1024, 1024), "high", 765),    # OpenAI's worked examples: 4 tiles
    ((2048, 4096), "high", 1105),   # scaled to 768 x 1536: 6 tiles
    ((4096, 8192), "low", 85),
    ((300, 200), None, 255),        # small images are not scaled up: one tile
])
def test_openai_tokens_follow_the_tile_rule(
    size: tuple[int, int], detail: str | None, expected: int
) -> None:
    assert image_tokens(ImageInfo("image/png", *size), "openai", detail) == expected
    assert image_tokens(ImageInfo("image/png", *size), "responses", detail) == expected


def test_anthropic_tokens_are_the_area_over_750_after_the_size_cap() -> None:
    assert image_tokens(ImageInfo("image/png", 1092, 1092), "anthropic") == 1590
    assert image_tokens(ImageInfo("image/png", 200, 200), "anthropic") == 54
    # Anything larger is scaled down first: the count stops near 1,600.
    assert 1500 < image_tokens(ImageInfo("image/png", 8000, 6000), "anthropic") <= 1600


def test_an_image_of_unknown_size_is_counted_on_the_high_side() -> None:
    unknown = ImageInfo(None, None, None)
    assert image_tokens(unknown, "openai") == image_tokens(unknown, "anthropic") == FALLBACK_TOKENS
    assert image_tokens(unknown, "openai", "low") == 85
