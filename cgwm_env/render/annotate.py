"""Pictures people can read: panels side by side under their titles, text overlaid, arrows drawn
through a camera, and videos written as MP4 (H.264, which browsers play) beside a GIF.

Images are (H, W, 3) uint8; videos (T, H, W, 3) uint8. Text is drawn with Pillow's bundled font.
"""

from __future__ import annotations

import functools
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from cgwm_env.render.camera import Camera

TITLE_HEIGHT = 32  # px of the title band above each panel
WHITE, BLACK = (255, 255, 255), (0, 0, 0)


@functools.cache
def font(size: int) -> ImageFont.FreeTypeFont:
    """Pillow's bundled font at `size` px."""
    return ImageFont.load_default(size=size)


def _image(image) -> np.ndarray:
    a = np.asarray(image)
    if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
        raise ValueError(f"image: expected (H, W, 3) uint8, got {a.shape} {a.dtype}")
    return a


def panels(images, titles) -> np.ndarray:
    """Images of one height side by side, each under a band with its title: (TITLE_HEIGHT + H, sum W, 3)."""
    images = [_image(i) for i in images]
    if len(images) != len(titles) or not images:
        raise ValueError(f"titles: expected one title per image ({len(images)}), got {len(titles)}")
    height = images[0].shape[0]
    if any(i.shape[0] != height for i in images):
        raise ValueError(f"images: expected one height, got {[i.shape[0] for i in images]}")
    out = []
    for image, title in zip(images, titles):
        band = Image.new("RGB", (image.shape[1], TITLE_HEIGHT), (40, 40, 40))
        ImageDraw.Draw(band).text((8, TITLE_HEIGHT // 2), str(title), fill=WHITE, font=font(18), anchor="lm")
        out.append(np.concatenate((np.asarray(band), image), axis=0))
    return np.concatenate(out, axis=1)


def panel_video(videos: dict) -> np.ndarray:
    """Videos {title: (T, H, W, 3) uint8} of one length and height side by side, titled:
    (T, TITLE_HEIGHT + H, sum W, 3), e.g. observed beside predicted frames of a test clip."""
    titles, clips = list(videos), [np.asarray(v) for v in videos.values()]
    if not clips or any(c.ndim != 4 or len(c) != len(clips[0]) for c in clips):
        raise ValueError(f"videos: expected (T, H, W, 3) videos of one length, got {[c.shape for c in clips]}")
    return np.stack([panels([c[t] for c in clips], titles) for t in range(len(clips[0]))])


def overlay(image, lines, corner: str = "top-left", size: int = 16) -> np.ndarray:
    """A copy of `image` with `lines` of text in a dark box at `corner` ("top-left" or "bottom-left")."""
    pil = Image.fromarray(_image(image).copy())
    draw = ImageDraw.Draw(pil, "RGBA")
    text = "\n".join(lines)
    left, top, right, bottom = draw.multiline_textbbox((0, 0), text, font=font(size), spacing=3)
    x = 6
    y = 6 if corner == "top-left" else pil.height - (bottom - top) - 12
    draw.rectangle((x - 4, y - 4, x + right - left + 4, y + bottom - top + 6), fill=(0, 0, 0, 150))
    draw.multiline_text((x - left, y - top), text, fill=WHITE, font=font(size), spacing=3)
    return np.asarray(pil)


def arrows(image, camera: Camera, starts, ends, colors, width: int = 3) -> np.ndarray:
    """A copy of `image` (camera.height, camera.width, 3) with arrows from world points starts
    (N, 3) m to ends (N, 3) m seen through `camera`, in colors (N RGB triples 0-255); arrows
    behind the camera are left out."""
    image = _image(image)
    if image.shape[:2] != (camera.height, camera.width):
        raise ValueError(f"image: expected the camera's ({camera.height}, {camera.width}) px, got {image.shape[:2]}")
    points = torch.as_tensor(np.concatenate((np.asarray(starts), np.asarray(ends))), dtype=torch.float32)
    uv, depth = camera.project(points)
    uv, depth = uv.numpy(), depth.numpy()
    n = len(uv) // 2
    pil = Image.fromarray(image.copy())
    draw = ImageDraw.Draw(pil)
    for i in range(n):
        if depth[i] <= 0 or depth[n + i] <= 0:
            continue
        (x0, y0), (x1, y1) = uv[i], uv[n + i]
        color = tuple(int(c) for c in colors[i])
        draw.line((x0, y0, x1, y1), fill=color, width=width)
        d = np.array([x1 - x0, y1 - y0])
        length = float(np.hypot(*d))
        if length > 1e-6:
            d, side = d / length, np.array([-d[1], d[0]]) / length
            head = 3.0 * width
            left, right = np.array([x1, y1]) - head * d + 0.6 * head * side, np.array([x1, y1]) - head * d - 0.6 * head * side
            draw.polygon([(x1, y1), tuple(left), tuple(right)], fill=color)
    return np.asarray(pil)


def write_video(frames, path, fps: float) -> tuple[Path, Path]:
    """Write frames (T, H, W, 3) uint8 as path.mp4 (H.264, yuv420p: H and W made even by
    padding) and path.gif (looping); returns both paths. `path` without its suffix names both."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(f"frames: expected (T, H, W, 3) uint8 with T >= 1, got {frames.shape} {frames.dtype}")
    if not fps > 0:
        raise ValueError(f"fps: expected a positive frame rate, got {fps!r}")
    stem = Path(path).with_suffix("")
    stem.parent.mkdir(parents=True, exist_ok=True)
    gif, mp4 = stem.with_suffix(".gif"), stem.with_suffix(".mp4")
    imageio.mimsave(gif, list(frames), duration=1000.0 / fps, loop=0)
    pad = ((0, 0), (0, frames.shape[1] % 2), (0, frames.shape[2] % 2), (0, 0))
    even = np.pad(frames, pad, mode="edge")
    imageio.mimsave(mp4, list(even), fps=fps, codec="libx264", pixelformat="yuv420p", macro_block_size=2)
    return mp4, gif
