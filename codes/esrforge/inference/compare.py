"""Pictures that compare upscalers: panels side by side, and native-resolution crops where they differ."""

from __future__ import annotations

import cv2
import numpy as np

GAP = 4
"""White pixels between panels."""


def gain_boxes(
    bicubic: np.ndarray, model: np.ndarray, hr: np.ndarray, size: int, count: int
) -> list[tuple[int, int]]:
    """``(top, left)`` of up to ``count`` non-overlapping ``size`` squares where the model's absolute error
    is lowest against bicubic's (the largest gain), best first, on a grid of half-square steps."""
    gain = np.abs(bicubic.astype(np.float32) - hr) - np.abs(model.astype(np.float32) - hr)
    gain = gain.mean(axis=2) if gain.ndim == 3 else gain
    step = max(size // 2, 1)
    candidates = [
        (float(gain[top : top + size, left : left + size].mean()), top, left)
        for top in range(0, hr.shape[0] - size + 1, step)
        for left in range(0, hr.shape[1] - size + 1, step)
    ]
    chosen: list[tuple[int, int]] = []
    for _, top, left in sorted(candidates, reverse=True):
        if all(abs(top - t) >= size or abs(left - x) >= size for t, x in chosen):
            chosen.append((top, left))
        if len(chosen) == count:
            break
    return chosen


def row(panels: list[np.ndarray]) -> np.ndarray:
    """Panels of equal height side by side, :data:`GAP` white pixels apart."""
    spaced = [np.pad(p, ((0, 0), (0, GAP), (0, 0)), constant_values=255) for p in panels[:-1]]
    return np.concatenate([*spaced, panels[-1]], axis=1)


def column(rows: list[np.ndarray]) -> np.ndarray:
    """Rows one under another, :data:`GAP` white pixels apart, narrower ones padded white on the right."""
    width = max(r.shape[1] for r in rows)
    padded = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    spaced = [np.pad(r, ((0, GAP), (0, 0), (0, 0)), constant_values=255) for r in padded[:-1]]
    return np.concatenate([*spaced, padded[-1]], axis=0)


def crop_row(panels: list[np.ndarray], top: int, left: int, size: int, zoom: int = 2) -> np.ndarray:
    """The same ``size`` square of every panel, enlarged ``zoom`` times (nearest) for viewing, in a row."""
    crops = [p[top : top + size, left : left + size] for p in panels]
    return row([c.repeat(zoom, axis=0).repeat(zoom, axis=1) for c in crops])


def comparison(panels: list[np.ndarray], labels: list[str], size: int = 128, crops: int = 2) -> np.ndarray:
    """A picture of uint8 RGB panels ``bicubic, model, original`` of one image: the whole images
    shrunk to the crops' width, then ``crops`` native-resolution crops (2x) where the model gains most."""
    size = min(size, *panels[0].shape[:2])
    bicubic, model, hr = panels[:3]
    rows = [crop_row(panels, top, left, size) for top, left in gain_boxes(bicubic, model, hr, size, crops)]
    width = rows[0].shape[1]
    overview = row(panels)
    height = max(round(overview.shape[0] * width / overview.shape[1]), 1)
    overview = cv2.resize(overview, (width, height), interpolation=cv2.INTER_AREA)
    header = np.full((22, width, 3), 255, np.uint8)
    panel = (width - GAP * (len(labels) - 1)) // len(labels)
    for i, label in enumerate(labels):
        cv2.putText(header, label, (i * (panel + GAP) + 4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
    blank = np.full((GAP, width, 3), 255, np.uint8)
    parts = [header, overview]
    for crop in rows:
        parts += [blank, crop]
    return np.concatenate(parts, axis=0)
