"""The tool gate (cost 1): checkable answers checked with tools — tool calls against the API
list the task gave, arithmetic with the calculator, Python blocks in the sandbox."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from agentinstruct.generate.tools import check_arithmetic, check_code, check_tool_calls
from agentinstruct.generate.validators.base import TOOL, Candidate, Rejection, ValidatorContext, register

from agentinstruct.recipes import RecipeError
from agentinstruct.sandbox import Sandbox

if TYPE_CHECKING:
    from agentinstruct.generate.gates_config import ToolGate


def open_sandbox(cfg: ToolGate, log: Callable[[str], None] | None = None) -> Sandbox | None:
    """The sandbox the tool gate runs code in (None when it runs none). Says which isolation
    is in use; refuses (RecipeError) a machine without namespaces unless the recipe opts in."""
    if not (cfg.enabled and cfg.sandbox):
        return None
    sandbox = Sandbox()
    if log:
        log(f"tool gate sandbox: isolation {sandbox.level!r}" + (
            "" if sandbox.isolated else " (none: code runs with this machine's network, files and /proc)"))
    if not sandbox.isolated and not cfg.allow_unisolated:
        raise RecipeError(
            "gates.tools.sandbox: this machine offers no namespace isolation (no working bwrap or unshare), "
            "so model-written code could read secrets and reach the network; set gates.tools.allow_unisolated: "
            "true to run it anyway, or gates.tools.sandbox: false")
    return sandbox


def makes_tool_calls(c: Candidate) -> bool:
    """The skill answers with a JSON ``calls`` list (the tool-use skill)."""
    policy = c.skill.answer
    return policy.format == "json" and "calls" in (policy.json_schema or {}).get("properties", {})


@register("tools")
class Tools:
    cost = TOOL

    def __init__(self, cfg: ToolGate):
        self.cfg = cfg
        self.sandbox = open_sandbox(cfg)

    @classmethod
    def from_context(cls, ctx: ValidatorContext) -> Tools:
        return cls(ctx.gates.tools)

    async def check(self, c: Candidate) -> Rejection | None:
        reason = await self.reason(c)
        return Rejection(self.name, reason) if reason else None

    async def reason(self, c: Candidate) -> str | None:
        if self.cfg.tool_calls and makes_tool_calls(c):
            # the API list is the user turn less the request itself, which may name things too
            api_text = c.user.replace(c.task, " ") if c.task else c.user
            if reason := check_tool_calls(c.answer, api_text, c.instruction_type):
                return reason
        if self.cfg.calculator and (reason := check_arithmetic(c.answer)):
            return reason
        if self.sandbox and "```" in c.answer:  # off the event loop: a block may run for seconds
            return await asyncio.to_thread(check_code, c.answer, self.cfg.sandbox_timeout_s, self.sandbox,
                                           self.cfg.sandbox_memory_mb)
        return None
