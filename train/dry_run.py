"""The training plan, checked on CPU before renting a GPU (``--dry_run true`` / ``--dry-run``).

It parses the recipe the way a real run does (``TrlParser``), builds the model from its config
on the meta device (no weights: seconds even for 7B), applies LoRA through PEFT when the recipe
asks for it, and prints what the run would do: parameter counts, trainable parameters, the
effective batch, tokens per optimizer step and a memory estimate for weights, gradients and
optimizer states.

Model configs come from a local folder, else from the copies shipped under
``recipes/model_configs/<owner>/<name>/config.json`` (the base models the shipped recipes name,
so the check runs offline), else from the Hugging Face cache or the Hub.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from agentinstruct.recipes import RecipeError

BYTES_PER_PARAM = {"float32": 4.0, "bfloat16": 2.0, "float16": 2.0}
ADAM_STATE_BYTES = 8.0  # AdamW keeps two fp32 moments per trainable parameter
MASTER_WEIGHT_BYTES = 4.0  # DeepSpeed's bf16/fp16 mode keeps an fp32 master copy of trainable weights
NF4_BYTES = 0.5  # a 4-bit weight
# bitsandbytes' quantisation constants (QLoRA paper, section 3): one fp32 absmax per 64-weight
# block, or with nested ("double") quantisation an 8-bit absmax per block plus one fp32 per 256
# blocks
NF4_CONSTANT_BYTES = 4 / 64
NF4_NESTED_CONSTANT_BYTES = 1 / 64 + 4 / (64 * 256)
INT8_BYTES = 1.0
GIB = 1024**3


@dataclass
class WorldSize:
    processes: int
    source: str  # where the number came from
    sharded: bool = False  # ZeRO-3 / FSDP: weights, grads and optimizer states split across processes
    distributed_type: str = "NO"  # accelerate's distributed_type (DEEPSPEED, FSDP, MULTI_GPU, ...)


@dataclass
class MemoryEstimate:
    """Bytes for the whole model (before any sharding); activations are not included."""

    weights: float
    gradients: float
    optimizer: float
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer


@dataclass
class TrainPlan:
    recipe: str | None
    model: str
    config_source: str
    method: str  # full | LoRA | QLoRA (4-bit base + LoRA)
    dtype: str
    total_params: int
    trainable_params: int
    world: WorldSize
    per_device_batch: int
    grad_accum: int
    max_length: int
    packing: bool
    epochs: float
    learning_rate: float
    output_dir: str
    data: list[str]
    memory: MemoryEstimate
    lora: dict[str, Any] | None = None

    @property
    def effective_batch(self) -> int:
        return self.per_device_batch * self.grad_accum * self.world.processes

    @property
    def tokens_per_step(self) -> int:
        return self.effective_batch * self.max_length

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "effective_batch": self.effective_batch,
                "tokens_per_step": self.tokens_per_step, "memory_total": self.memory.total}

    def render(self) -> str:
        m, w = self.memory, self.world
        pct = 100.0 * self.trainable_params / self.total_params if self.total_params else 0.0
        lines = [
            f"dry run of {self.recipe or 'the given arguments'}: nothing is loaded or trained",
            f"model:            {self.model} (config: {self.config_source})",
            f"method:           {self.method}, weights in {self.dtype}",
        ]
        if self.lora:
            lines.append("lora:             " + ", ".join(f"{k}={v}" for k, v in self.lora.items()))
        lines += [
            f"parameters:       {self.total_params:,} total, {self.trainable_params:,} trainable ({pct:.2f}%)",
            f"world size:       {w.processes} ({w.source})",
            f"effective batch:  {self.effective_batch} = {self.per_device_batch} per device x "
            f"{self.grad_accum} accumulation x {w.processes} processes",
            f"tokens per step:  {self.tokens_per_step:,} = {self.effective_batch} x max_length "
            f"{self.max_length}" + ("" if self.packing else " (at most: packing is off)"),
            f"schedule:         {self.epochs:g} epochs at lr {self.learning_rate:g}",
            f"memory estimate:  weights {m.weights / GIB:.2f} GiB + gradients {m.gradients / GIB:.2f} GiB"
            f" + optimizer {m.optimizer / GIB:.2f} GiB = {m.total / GIB:.2f} GiB"
            + (f" ({m.total / GIB / w.processes:.2f} GiB per device, sharded over {w.processes})"
               if w.sharded and w.processes > 1 else ""),
            *(f"                  {note}" for note in m.notes),
            f"data:             {', '.join(self.data) or 'none given'}",
            f"output_dir:       {self.output_dir}",
        ]
        return "\n".join(lines)


def shipped_config_dir(model: str) -> Path | None:
    from agentinstruct.resources import data_path

    folder = data_path("recipes", "model_configs", *model.split("/"))
    return folder if (folder / "config.json").is_file() else None


def load_model_config(model: str, where: str, revision: str | None = None,
                      trust_remote_code: bool = False) -> tuple[Any, str]:
    """The model's ``PretrainedConfig`` and where it came from (see the module docstring)."""
    from transformers import AutoConfig

    from agentinstruct.embedded import resolve_model_path

    path = resolve_model_path(model)
    if Path(path).is_dir():
        return AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code), path
    shipped = shipped_config_dir(model)
    if shipped is not None:
        return AutoConfig.from_pretrained(shipped), f"shipped copy {shipped / 'config.json'}"
    try:
        config = AutoConfig.from_pretrained(model, revision=revision, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise RecipeError(f"{where}: model_name_or_path: no config for {model!r}: not a local folder, "
                          f"not in recipes/model_configs, and not in the Hugging Face cache or Hub "
                          f"({str(exc).splitlines()[0]})") from None
    return config, "Hugging Face cache/Hub"


def world_size(accelerate_config: str | None) -> WorldSize:
    """``WORLD_SIZE`` (set by ``accelerate launch``/``torchrun``), else ``num_processes`` of the
    accelerate config file given (or accelerate's default one), else 1."""
    if os.environ.get("WORLD_SIZE"):
        return WorldSize(int(os.environ["WORLD_SIZE"]), "WORLD_SIZE")
    if accelerate_config:
        path = Path(accelerate_config)
        if not path.is_file():
            raise RecipeError(f"dry_run_accelerate_config: {accelerate_config}: file not found")
    else:
        from accelerate.commands.config.config_args import default_config_file

        path = Path(default_config_file)
        if not path.is_file():
            return WorldSize(1, "no WORLD_SIZE and no accelerate config: one process")
    try:
        cfg = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path}: not valid YAML ({exc})") from None
    kind = str(cfg.get("distributed_type", "NO")).upper()
    zero3 = kind == "DEEPSPEED" and int((cfg.get("deepspeed_config") or {}).get("zero_stage", 0)) == 3
    return WorldSize(int(cfg.get("num_processes", 1)), f"num_processes in {path}", zero3 or kind == "FSDP",
                     kind)


def _build_on_meta(config: Any, trust_remote_code: bool) -> Any:
    """The model with every tensor on the meta device. ``torch.device("meta")`` rather than
    accelerate's ``init_empty_weights``, which unties tied embeddings (a 135M model would count
    its 28M embedding twice)."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)


def _weight_bytes(model: Any, dtype: str, model_args: Any) -> tuple[float, list[str]]:
    """Bytes of the frozen/base weights: 4- or 8-bit linear layers (all but the output head, as
    bitsandbytes quantises them) when the recipe loads quantised, the dtype's bytes otherwise."""
    import torch

    per = BYTES_PER_PARAM[dtype]
    total = sum(p.numel() for p in model.parameters())
    if not (model_args.load_in_4bit or model_args.load_in_8bit):
        return total * per, []
    quantised = sum(m.weight.numel() for name, m in model.named_modules()
                    if isinstance(m, torch.nn.Linear) and name.split(".")[-1] != "lm_head")
    if model_args.load_in_4bit:
        nested = bool(model_args.use_bnb_nested_quant)
        q_bytes = NF4_BYTES + (NF4_NESTED_CONSTANT_BYTES if nested else NF4_CONSTANT_BYTES)
        note = (f"4-bit {model_args.bnb_4bit_quant_type} base: {quantised:,} linear weights at "
                f"{q_bytes:.3f} B each ({'nested' if nested else 'plain'} quantisation constants), "
                f"the rest in {dtype}; the parameter count is the same as unquantised")
    else:
        q_bytes = INT8_BYTES
        note = f"8-bit base: {quantised:,} linear weights at 1 B each, the rest in {dtype}"
    return quantised * q_bytes + (total - quantised) * per, [note]


TRUE_WORDS = ("true", "1", "yes", "y")
# a bf16 recipe is checked on a machine without a GPU: transformers refuses bf16 there unless
# use_cpu is set, so the dry run parses with it (the plan still describes the GPU run)
CPU_PARSE_FLAGS = ["--use_cpu", "true"]


def _flag_value(argv: list[str], name: str) -> bool | None:
    for i, arg in enumerate(argv):
        if arg == f"--{name}":
            nxt = argv[i + 1] if i + 1 < len(argv) else None
            return nxt is None or nxt.startswith("--") or nxt.lower() in TRUE_WORDS
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1].lower() in TRUE_WORDS
    return None


def dry_run_requested(argv: list[str]) -> bool:
    """``--dry_run [true]`` on the command line, or ``dry_run: true`` in the recipe."""
    flag = _flag_value(argv, "dry_run")
    return flag if flag is not None else bool(_recipe_value(argv, "dry_run"))


def _recipe_value(argv: list[str], key: str) -> Any:
    from agentinstruct.train.sft import config_path

    cfg = config_path(argv)
    if not cfg or not Path(cfg).is_file():
        return None
    try:
        data = yaml.safe_load(Path(cfg).read_text())
    except yaml.YAMLError:
        return None  # TrlParser reports it
    return data.get(key) if isinstance(data, dict) else None


def dry_run_plan(argv: list[str]) -> TrainPlan:
    """Parse the recipe as a real run does and plan it."""
    from agentinstruct.train.sft import config_path, parse_args

    flag = _flag_value(argv, "use_cpu")
    on_cpu = flag if flag is not None else bool(_recipe_value(argv, "use_cpu"))
    script_args, training_args, model_args = parse_args([*argv, *CPU_PARSE_FLAGS])
    return plan_training(script_args, training_args, model_args, config_path(argv), on_cpu=on_cpu)


def plan_training(script_args: Any, training_args: Any, model_args: Any, cfg: str | None,
                  on_cpu: bool = False) -> TrainPlan:
    """The plan of the run these parsed arguments describe (no data or weights are read);
    ``on_cpu``: the run trains on CPU (``dtype: auto`` is float32 there, bfloat16 on a GPU)."""
    from agentinstruct.train.preflight import unknown_lora_targets

    where = cfg or "train"
    model_name = model_args.model_name_or_path
    if not model_name:
        raise RecipeError(f"{where}: model_name_or_path: required key is missing")
    config, source = load_model_config(model_name, where, model_args.model_revision,
                                       training_args.trust_remote_code)
    model = _build_on_meta(config, training_args.trust_remote_code)
    dtype = model_args.dtype if model_args.dtype in BYTES_PER_PARAM else (
        "float32" if on_cpu else "bfloat16")  # auto/None: what the device runs
    total = sum(p.numel() for p in model.parameters())
    weights, notes = _weight_bytes(model, dtype, model_args)
    lora = None
    if model_args.use_peft:
        model, lora = _apply_lora(model, model_args, where, unknown_lora_targets)
        method = "QLoRA (4-bit base + LoRA)" if model_args.load_in_4bit else "LoRA"
    else:
        if model_args.load_in_4bit or model_args.load_in_8bit:
            raise RecipeError(f"{where}: load_in_4bit/load_in_8bit needs use_peft: true "
                              "(quantised weights cannot be fully fine-tuned)")
        method = "full fine-tuning"
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    world = world_size(getattr(script_args, "dry_run_accelerate_config", None))
    if model_args.use_peft:
        weights += trainable * BYTES_PER_PARAM[dtype]  # the adapter's own weights
    memory = MemoryEstimate(
        weights=weights,
        gradients=trainable * BYTES_PER_PARAM[dtype],
        optimizer=trainable * ADAM_STATE_BYTES,
        notes=[*notes, f"gradients in {dtype} and AdamW's 2 fp32 moments for each of the "
                       f"{trainable:,} trainable parameters; activations not included"
                       + (" (gradient checkpointing on)" if training_args.gradient_checkpointing else "")],
    )
    if world.distributed_type == "DEEPSPEED" and dtype != "float32":
        memory.optimizer += trainable * MASTER_WEIGHT_BYTES
        memory.notes.append(f"DeepSpeed: plus an fp32 master copy of the trainable weights "
                            f"({MASTER_WEIGHT_BYTES:g} B each), counted under optimizer")
    sources = (script_args.dataset_mixture or {}).get("sources", [])
    data = [f"{s.get('path')}" + ("" if Path(str(s.get("path"))).exists() else " (not there yet)")
            for s in sources if isinstance(s, dict)]
    return TrainPlan(
        recipe=cfg, model=model_name, config_source=source, method=method, dtype=dtype,
        total_params=total, trainable_params=trainable,
        world=world,
        per_device_batch=training_args.per_device_train_batch_size,
        grad_accum=training_args.gradient_accumulation_steps, max_length=training_args.max_length,
        packing=bool(training_args.packing), epochs=training_args.num_train_epochs,
        learning_rate=training_args.learning_rate, output_dir=training_args.output_dir,
        data=data, memory=memory, lora=lora,
    )


def _apply_lora(model: Any, model_args: Any, where: str, unknown_targets: Any) -> tuple[Any, dict[str, Any]]:
    import torch
    from peft import get_peft_model
    from trl import get_peft_config

    targets = model_args.lora_target_modules
    if isinstance(targets, list) and targets != ["all-linear"]:
        unknown = unknown_targets([n for n, _ in model.named_modules()], targets)
        if unknown:
            raise RecipeError(f"{where}: lora_target_modules: {unknown} not in the model")
    peft_config = get_peft_config(model_args)
    with torch.device("meta"):  # the adapter matrices on the meta device too
        model = get_peft_model(model, peft_config)
    summary = {"r": model_args.lora_r, "alpha": model_args.lora_alpha,
               "targets": targets if isinstance(targets, str) else ",".join(targets or ["PEFT default"])}
    return model, summary
