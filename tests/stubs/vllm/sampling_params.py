"""Stub: ``SamplingParams`` and the older ``GuidedDecodingParams`` (a test adds
``StructuredOutputsParams`` to play a newer vLLM)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class GuidedDecodingParams:
    json: Any = None
    json_object: bool | None = None


class SamplingParams:
    def __init__(self, **kwargs: Any):
        self.__dict__.update(kwargs)
