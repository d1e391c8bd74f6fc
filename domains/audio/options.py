"""Typed options of the audio domain (see ``domains/options.py``): each source's ``data.options``
and each encoder's arguments, derived from the code that reads them; the domain has no
``evaluate.domain`` options (its speaker protocol takes its settings from the recipe's data)."""

from __future__ import annotations

from domains.audio.encoders import ENCODERS
from domains.audio.readers import SOURCES
from domains.options import NoOptions, encoder_models, signature_options, source_models

# speech_digits passes its own sample_rate and clip_seconds to both parts: setting them inside
# `synthetic` or `real` would be silently overridden, so there they are unknown keys.
_COMMON = ("sample_rate", "clip_seconds")
Synthetic = signature_options(SOURCES["espeak"].list_units, "audio_synthetic_options", skip=_COMMON)
Real = signature_options(SOURCES["asterisk"].list_units, "audio_real_options", skip=_COMMON)
Prompts = signature_options(SOURCES["asterisk_prompts"].list_units, "audio_prompts_options", skip=_COMMON)

SOURCE_OPTIONS = source_models(
    SOURCES,
    "audio",
    overrides={
        "speech_digits": {
            "synthetic": (Synthetic | None, None),
            "real": (Real | None, None),
            "prompts": (Prompts | None, None),
        }
    },
)
ENCODER_OPTIONS = encoder_models(ENCODERS, "audio")
EVALUATE_OPTIONS = NoOptions
