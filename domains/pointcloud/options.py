"""Typed options of the point-cloud domain (see ``domains/options.py``): each source's
``data.options``, each encoder's arguments, and ``evaluate.domain`` (linear SVM, kNN and N-way
K-shot accuracy, ``PointCloudDomain.evaluate``)."""

from __future__ import annotations

from pydantic import Field

from domains.options import Options, encoder_models, source_models
from domains.pointcloud.encoders import ENCODERS
from domains.pointcloud.readers import SOURCES


class EvaluateOptions(Options):
    knn_k: int = Field(5, ge=1)
    #: few-shot episodes: classes per episode, labelled examples and queries per class
    ways: int = Field(5, ge=2)
    shots: int = Field(10, ge=1)
    queries: int = Field(20, ge=1)
    episodes: int = Field(10, ge=1)


SOURCE_OPTIONS = source_models(SOURCES, "pointcloud")
ENCODER_OPTIONS = encoder_models(ENCODERS, "pointcloud")
EVALUATE_OPTIONS = EvaluateOptions
