"""Lay rendered panels out in one PNG with matplotlib: header, panel titles, legend.

Open3D draws no text, so titles and the legend are added here; the figure's
pixel size is exact (figsize / dpi, no tight bbox) so tests can check it.
"""
from typing import List

import numpy as np

from .scene import Scene

DPI = 100
HEADER_PX = 44
TITLE_PX = 22
LEGEND_ROW_PX = 18
LEGEND_COL_PX = 170
PAD_PX = 6
MIN_WIDTH_PX = 560  # room for the header line under a single panel


def _legend_columns(scene: Scene, panel_area_h: int) -> int:
    rows_fit = max((panel_area_h - 2 * PAD_PX) // LEGEND_ROW_PX, 1)
    return int(np.ceil(len(scene.legend) / rows_fit)) if scene.legend else 0


def figure_size(scene: Scene, panel_px: int) -> tuple:
    """-> (width, height) in pixels of the composed PNG for square panels of ``panel_px``."""
    nrows = int(np.ceil(len(scene.panels) / scene.ncols))
    area_h = nrows * (panel_px + TITLE_PX)
    width = scene.ncols * panel_px + _legend_columns(scene, area_h) * LEGEND_COL_PX
    return max(width, MIN_WIDTH_PX), HEADER_PX + area_h


def compose_png(scene: Scene, images: List[np.ndarray], out: str, note: str) -> tuple:
    """images: one (P, P, 3) uint8 per panel -> writes ``out``; returns its (width, height) px."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    panel_px = images[0].shape[0]
    width, height = figure_size(scene, panel_px)
    fig = plt.figure(figsize=(width / DPI, height / DPI), dpi=DPI, facecolor="white")
    try:
        fig.text(PAD_PX / width, 1 - 4 / height, scene.title, ha="left", va="top", fontsize=11, weight="bold")
        fig.text(PAD_PX / width, 1 - 24 / height, f"renderer: {note}", ha="left", va="top", fontsize=8, color="#555555")
        for i, image in enumerate(images):
            row, col = divmod(i, scene.ncols)
            top = HEADER_PX + row * (panel_px + TITLE_PX) + TITLE_PX
            ax = fig.add_axes([col * panel_px / width, 1 - (top + panel_px) / height, panel_px / width, panel_px / height])
            ax.imshow(image, interpolation="nearest")
            ax.set_axis_off()
            fig.text((col + 0.5) * panel_px / width, 1 - (top - 3) / height, scene.panels[i].title,
                     ha="center", va="bottom", fontsize=9)
        _draw_legend(fig, scene, width, height, scene.ncols * panel_px)
        fig.savefig(out, dpi=DPI, facecolor="white")
    except OSError as err:
        raise OSError(f"--out: cannot write the PNG {out!r}: {err.strerror or err}") from err
    finally:
        plt.close(fig)
    return width, height


def _draw_legend(fig, scene: Scene, width: int, height: int, x0: int) -> None:
    ncols = _legend_columns(scene, height - HEADER_PX)
    if not ncols:
        return
    per_col = int(np.ceil(len(scene.legend) / ncols))
    for i, (name, colour) in enumerate(scene.legend):
        col, row = divmod(i, per_col)
        x = x0 + col * LEGEND_COL_PX + PAD_PX
        y = HEADER_PX + PAD_PX + row * LEGEND_ROW_PX
        fig.patches.append(matplotlib_rect(fig, x / width, 1 - (y + 12) / height, 12 / width, 12 / height, colour))
        fig.text((x + 17) / width, 1 - (y + 6) / height, name[:22], ha="left", va="center", fontsize=8)


def matplotlib_rect(fig, x, y, w, h, colour):
    """A filled square in figure coordinates (a legend swatch)."""
    from matplotlib.patches import Rectangle

    return Rectangle((x, y), w, h, transform=fig.transFigure, facecolor=tuple(colour), edgecolor="#333333", lw=0.5)
