"""A preview image of sampled view pairs: look at what the encoder will be asked to match.

The drawing lives in ``stages/common/preview.py`` so that the evaluate report draws samples the
same way without importing this stage.
"""

from __future__ import annotations

from stages.common.preview import draw_sample, preview_png

__all__ = ["draw_sample", "preview_png"]
