"""Stub of vLLM V1's engine exceptions."""


class EngineDeadError(Exception):
    pass
