"""The report's figures from metrics files as the stages write them (null for undefined values)."""

from __future__ import annotations

import io

from PIL import Image

from stages.evaluate import report


def test_label_efficiency_plot_leaves_out_undefined_points() -> None:
    # write_json stores a NaN accuracy as null; the plot draws the other fractions instead of failing
    rows = [
        {"fraction": 0.1, "pretrained_linear": None, "pretrained_linear_std": None, "random_init_full": 0.5},
        {"fraction": 1.0, "pretrained_linear": 0.8, "pretrained_linear_std": 0.02, "random_init_full": 0.7},
    ]
    image = Image.open(io.BytesIO(report.label_efficiency_png(rows)))
    assert image.format == "PNG" and image.size[0] > 100


def test_spread_says_na_for_an_undefined_figure() -> None:
    assert report.spread(None, None, 3) == "n/a"
    assert report.spread(0.8125, None, 3) == "0.812 (1 seed)"
    assert report.spread(0.8125, 0.01, 3) == "0.812 ± 0.010 (3 seeds)"
