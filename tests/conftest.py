from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
sys.path.insert(0, str(TESTS))

from fake_openai import FakeOpenAIServer  # noqa: E402


@pytest.fixture
def fake_server():
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture(scope="session")
def embedded_model():
    """The real embedded SmolLM2, loaded once for the session."""
    from agentinstruct.llm import ModelSpec, create_model

    return create_model(ModelSpec())


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO
