"""Typed options of the time-series domain (see ``domains/options.py``): each source's
``data.options`` and each encoder's arguments, derived from the code that reads them; the domain
has no ``evaluate.domain`` options (the shared probes are its protocol)."""

from __future__ import annotations

from domains.options import NoOptions, encoder_models, source_models
from domains.timeseries.encoders import ENCODERS
from domains.timeseries.readers import SOURCES

SOURCE_OPTIONS = source_models(SOURCES, "timeseries")
ENCODER_OPTIONS = encoder_models(ENCODERS, "timeseries")
EVALUATE_OPTIONS = NoOptions
