"""Image parts of chat messages: made from [input] images, checked by the scan, read when sent.

A row carries its images as OpenAI `image_url` parts whose url is the value as the data gave it
(a path, an http(s) URL or a data: URL), so a batch of rows holds paths, never pictures. The scan
checks every image before anything is sent; `resolve` reads an image file into a base64 data URL
only when the row's requests are built, so memory holds the images of the requests in flight.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from batchrun.errors import InputError
from batchrun.sources.images import UNKNOWN, ImageInfo, data_url_info, is_url, load, read_info

# (what the image is, the part's `detail`): all the token estimate needs of one image part.
Seen = tuple[ImageInfo, str | None]
_FIX = "fix the path (image paths are relative to the input file's folder) or the row"


def column_parts(value: Any, where: str, column: str) -> list[dict[str, Any]]:
    """The `image_url` parts of an [input] images cell: one value, a list of them, or null."""
    if value is None:
        return []
    values = value if type(value) is list else [value]
    for item in values:
        if type(item) is not str or not item.strip():
            raise InputError(
                f"{where}: [input] images column {column!r} holds {_shown(item)}; give a path, "
                "an http(s) or data: URL, or a list of them (null for a row without images)"
            )
    return [{"type": "image_url", "image_url": {"url": item}} for item in values]


def add_to_user_message(
    messages: list[dict[str, Any]], parts: Sequence[dict[str, Any]], where: str
) -> list[dict[str, Any]]:
    """`messages` with `parts` appended to the content of the last user message."""
    for at in range(len(messages) - 1, -1, -1):
        message = messages[at]
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if content is None:
            content = []
        elif type(content) is str:
            content = [{"type": "text", "text": content}]
        elif type(content) is not list:
            break
        return [*messages[:at], {**message, "content": [*content, *parts]}, *messages[at + 1 :]]
    raise InputError(
        f"{where}: [input] images go into the last user message, and this row has none "
        "with text or a list of parts; add one to the row's messages"
    )


def image_urls(messages: Any) -> Iterator[tuple[str | None, str | None]]:
    """(url, detail) of every `image_url` part; url None when the part has none."""
    if type(messages) is not list:
        return
    for message in messages:
        content = message.get("content") if type(message) is dict else None
        if type(content) is not list:
            continue
        for part in content:
            if type(part) is dict and part.get("type") == "image_url":
                url, detail = _url(part.get("image_url"))
                yield url, detail


def check(messages: Any, folder: Path, where: str) -> None:
    """Refuse an image that cannot be sent: a missing or unreadable file, a bad data URL."""
    for url, _ in image_urls(messages):
        if url is None:
            raise InputError(
                f'{where}: an image_url part has no url; write {{"type": "image_url", '
                '"image_url": {"url": "..."}} in the row'
            )
        try:
            read_info(url, folder)
        except ValueError as err:
            raise InputError(f"{where}: image {_shown(url)}: {err}; {_FIX}") from None


def resolve(
    messages: list[dict[str, Any]], folder: Path | None, where: str
) -> tuple[list[dict[str, Any]], list[Seen]]:
    """Messages as they are sent (image files read into data URLs) and what each image is.

    With `folder` None (the bodies of OpenAI batch input, sent as they are) nothing is read.
    """
    seen: list[Seen] = []
    out: list[dict[str, Any]] | None = None
    for at, message in enumerate(messages):
        content = message.get("content") if type(message) is dict else None
        if type(content) is not list:
            continue
        parts: list[Any] | None = None
        for index, part in enumerate(content):
            if type(part) is not dict or part.get("type") != "image_url":
                continue
            url, detail = _url(part.get("image_url"))
            if url is None:
                continue
            if folder is None or is_url(url) or url.startswith("data:"):
                seen.append((data_url_info(url) if url.startswith("data:") else UNKNOWN, detail))
                continue
            sent, info = _read(url, folder, where)
            seen.append((info, detail))
            if parts is None:
                parts = list(content)
            image = part["image_url"]
            parts[index] = {**part, "image_url": {**image, "url": sent} if type(image) is dict
                            else {"url": sent}}
        if parts is not None:
            if out is None:
                out = list(messages)
            out[at] = {**message, "content": parts}
    return (messages if out is None else out), seen


def _read(url: str, folder: Path, where: str) -> tuple[str, ImageInfo]:
    try:
        return load(url, folder)
    except FileNotFoundError:
        raise InputError(
            f"{where}: image {_shown(url)}: no such image file: {folder / url}; {_FIX}"
        ) from None
    except OSError as err:
        raise InputError(
            f"{where}: image {_shown(url)}: cannot read image {folder / url} ({err.strerror}); "
            f"{_FIX}"
        ) from None
    except ValueError as err:
        raise InputError(f"{where}: image {_shown(url)}: {err}; {_FIX}") from None


def _url(image: Any) -> tuple[str | None, str | None]:
    """The url and detail of an `image_url` value: {"url", "detail"} or, loosely, a bare url."""
    if type(image) is str:
        return image, None
    if type(image) is dict:
        url, detail = image.get("url"), image.get("detail")
        return (url if type(url) is str and url else None,
                detail if type(detail) is str else None)
    return None, None


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


__all__ = ["Seen", "add_to_user_message", "check", "column_parts", "image_urls", "resolve"]
