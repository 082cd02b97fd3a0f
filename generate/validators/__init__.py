"""Validators: one registry for a skill's ``answer.checks`` and a recipe's per-record gates.

See ``base.py`` for the protocol. The built-in validators live in ``text_checks`` (cost 0),
``tool_checks`` (cost 1), ``judge_checks`` (cost 2) and ``skill_checks`` (the answer forms of
particular skills: MCQ letter, label set, extraction schema, Fermi arithmetic); importing this
package registers them.
"""

from agentinstruct.generate.validators import (  # noqa: F401 - registers the built-ins
    judge_checks,
    skill_checks,
    text_checks,
    tool_checks,
)
from agentinstruct.generate.validators.adapters import RecordGate, candidate_from_record
from agentinstruct.generate.validators.base import (
    LLM,
    PURE,
    REGISTRY,
    TOOL,
    Candidate,
    Rejection,
    Validator,
    ValidatorContext,
    build_validator,
    build_validators,
    by_cost,
    first_rejection,
    gate_names,
    known_names,
    recipe_gates,
    register,
    run_validators,
    skill_validators,
)
from agentinstruct.generate.validators.counts import GateCounts, GateTally, reason_class

__all__ = [
    "LLM", "PURE", "REGISTRY", "TOOL", "Candidate", "GateCounts", "GateTally", "RecordGate", "Rejection",
    "Validator", "ValidatorContext", "build_validator", "build_validators", "by_cost", "candidate_from_record",
    "first_rejection", "gate_names", "known_names", "reason_class", "recipe_gates", "register",
    "run_validators", "skill_validators",
]
