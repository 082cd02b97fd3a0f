#!/usr/bin/env python
"""Supervised fine-tuning with TRL + PEFT, in the style of alignment-handbook / open-r1.

    accelerate launch [--config_file recipes/accelerate_configs/zero3.yaml] train/sft.py \
        --config recipes/<model>/sft/<variant>.yaml [--any_sft_config_flag value ...]

The YAML recipe fills three dataclasses through ``TrlParser`` (unknown keys are errors):
``SFTScriptArguments`` below, ``trl.SFTConfig`` and ``trl.ModelConfig``; CLI flags override it.
Order: seed -> logging -> last checkpoint -> data -> tokenizer/template -> model -> trainer ->
train -> save -> model card -> push. Also reachable as ``agentinstruct train --config ...``.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger("agentinstruct.train")


@dataclass
class SFTScriptArguments:
    dataset_mixture: dict = field(
        default=None,
        metadata={"help": "sources: [{path, splits, weight}], seed, test_split_size (see data_mixture.py)"},
    )
    chat_template: str = field(
        default=None,
        metadata={"help": "training template with {% generation %} tags: name in recipes/templates or a path (relative to this recipe)"},
    )
    check_examples: int = field(default=32, metadata={"help": "examples checked for trainable tokens"})
    dry_run: bool = field(
        default=False,
        metadata={"help": "print the plan (parameter counts, effective batch, tokens per step, memory "
                  "estimate) from the model built on the meta device, and exit without training"},
    )
    dry_run_accelerate_config: str = field(
        default=None,
        metadata={"help": "dry run: the accelerate config the run will use, for the world size "
                  "(default: WORLD_SIZE, else accelerate's default config, else 1)"},
    )


def parse_args(argv: list[str] | None = None):
    from trl import ModelConfig, SFTConfig, TrlParser

    parser = TrlParser((SFTScriptArguments, SFTConfig, ModelConfig))
    return parser.parse_args_and_config(args=argv)


def config_path(argv: list[str] | None) -> str | None:
    args = sys.argv[1:] if argv is None else argv
    for i, a in enumerate(args):
        if a == "--config" and i + 1 < len(args):
            return args[i + 1]
        if a.startswith("--config="):
            return a.split("=", 1)[1]
    return None


def provenance(script_args: SFTScriptArguments, model_args: Any, cfg: str | None) -> dict[str, Any]:
    """What the model was trained from: recipe text, base model, and each source's manifest."""
    sources = []
    for src in (script_args.dataset_mixture or {}).get("sources", []):
        entry = dict(src)
        manifest = Path(src["path"]).parent / "manifest.json"
        if manifest.exists():
            m = json.loads(manifest.read_text())
            entry.update(recipe_hash=m.get("recipe_hash"), teacher=m.get("teacher"), counts=m.get("counts"))
        sources.append(entry)
    return {"base_model": model_args.model_name_or_path, "recipe": cfg,
            "recipe_text": Path(cfg).read_text() if cfg and Path(cfg).exists() else None,
            "sources": sources}


def last_whole_checkpoint(output_dir: str | Path) -> str | None:
    """The newest ``checkpoint-N`` in ``output_dir`` that was saved whole.

    transformers writes a checkpoint's ``trainer_state.json`` last, so one that a kill cut short
    lacks it (or holds a torn one) and is passed over, where ``get_last_checkpoint`` would pick
    it and the resumed run would fail on its missing files."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return None
    steps = sorted(((int(m.group(1)), p) for p in folder.iterdir()
                    if p.is_dir() and (m := re.fullmatch(r"checkpoint-(\d+)", p.name))), reverse=True)
    for _, path in steps:
        try:
            json.loads((path / "trainer_state.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            logger.warning("Skipping %s: saved only in part (the run was killed while saving it)", path)
            continue
        return str(path)
    return None


def resume_checkpoint(requested: str | None, output_dir: str | Path) -> str | None:
    """``--resume_from_checkpoint`` when given, else the last whole checkpoint in output_dir."""
    return requested or last_whole_checkpoint(output_dir)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import datasets
    import transformers
    from accelerate import PartialState
    from agentinstruct.train.chat_templates import check_trainable_tokens, load_template
    from agentinstruct.train.data_mixture import load_mixture, parse_mixture
    from agentinstruct.train.dry_run import dry_run_plan, dry_run_requested
    from agentinstruct.train.preflight import check_lora_targets
    from transformers import AutoTokenizer, set_seed
    from trl import SFTTrainer, get_peft_config, get_quantization_config

    from agentinstruct.embedded import resolve_model_path
    from agentinstruct.outdir import check_writable_dir

    if dry_run_requested(sys.argv[1:] if argv is None else argv):  # the plan on CPU, before renting a GPU
        plan = dry_run_plan(sys.argv[1:] if argv is None else argv)
        print(plan.render())
        return {"dry_run": True, "plan": plan.as_dict(), "output_dir": plan.output_dir, "global_step": 0}

    script_args, training_args, model_args = parse_args(argv)
    cfg = config_path(argv)

    # seed and logging
    set_seed(training_args.seed)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        level=training_args.get_process_log_level(), handlers=[logging.StreamHandler(sys.stdout)])
    logger.setLevel(logging.INFO if training_args.should_log else logging.WARNING)
    datasets.utils.logging.set_verbosity(training_args.get_process_log_level())
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())

    # fail fast, before any data or weights load: an unusable output folder, a typo'd LoRA target
    check_writable_dir(training_args.output_dir, f"{cfg}: output_dir")
    model_path = resolve_model_path(model_args.model_name_or_path)
    if model_args.use_peft:
        check_lora_targets(model_path, model_args.lora_target_modules, str(cfg),
                           trust_remote_code=training_args.trust_remote_code)

    # resume from the last whole checkpoint in output_dir, if any (a killed run goes on from there)
    last_checkpoint = resume_checkpoint(training_args.resume_from_checkpoint, training_args.output_dir)
    if last_checkpoint:
        logger.info("Resuming from checkpoint %s", last_checkpoint)

    # data: only `messages` reaches the trainer
    if not script_args.dataset_mixture:
        raise ValueError(f"{cfg}: dataset_mixture: required key is missing")
    mixture = parse_mixture(script_args.dataset_mixture, f"{cfg}: dataset_mixture")
    data = load_mixture(mixture, f"{cfg}: dataset_mixture")
    logger.info("Training rows: %d%s", len(data["train"]),
                f", test rows: {len(data['test'])}" if "test" in data else "")

    # tokenizer and training chat template
    tokenizer = AutoTokenizer.from_pretrained(model_path, revision=model_args.model_revision,
                                              trust_remote_code=training_args.trust_remote_code)
    if script_args.chat_template:
        tokenizer.chat_template = load_template(script_args.chat_template, Path(cfg).absolute().parent if cfg else None)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if training_args.assistant_only_loss:
        n = min(script_args.check_examples, len(data["train"]))
        example = check_trainable_tokens(tokenizer, [data["train"][i]["messages"] for i in range(n)])
        logger.info("Example with its loss mask (trained tokens in [[...]]):\n%s", example)

    # model: dtype, optional 4-bit quantization, optional LoRA
    quantization_config = get_quantization_config(model_args)
    init_kwargs = {"revision": model_args.model_revision, "dtype": model_args.dtype,
                   "attn_implementation": model_args.attn_implementation,
                   "trust_remote_code": training_args.trust_remote_code}
    if quantization_config is not None:
        init_kwargs["device_map"] = {"": PartialState().local_process_index}
    training_args.model_init_kwargs = {**init_kwargs, **(training_args.model_init_kwargs or {})}

    trainer = SFTTrainer(
        model=model_path,
        args=training_args,
        train_dataset=data["train"],
        eval_dataset=data.get("test") if training_args.eval_strategy != "no" else None,
        processing_class=tokenizer,
        peft_config=get_peft_config(model_args),
        quantization_config=quantization_config,
    )

    # fail fast: a collated batch with no trainable token means a broken template or data
    first = [trainer.train_dataset[i] for i in range(min(training_args.per_device_train_batch_size,
                                                         len(trainer.train_dataset)))]
    batch = trainer.data_collator(first)
    if int((batch["labels"] != -100).sum()) == 0:
        raise ValueError("the first training batch has 0 trainable tokens (all labels are -100): "
                         "check chat_template's {% generation %} block and max_length")

    # train
    result = trainer.train(resume_from_checkpoint=last_checkpoint)
    trainer.log_metrics("train", result.metrics)
    trainer.save_metrics("train", result.metrics)
    trainer.save_state()

    # save: generation stops at EOS with the training template
    unwrapped = trainer.accelerator.unwrap_model(trainer.model)
    base = unwrapped.get_base_model() if hasattr(unwrapped, "get_base_model") else unwrapped
    base.generation_config.eos_token_id = tokenizer.eos_token_id
    base.generation_config.pad_token_id = tokenizer.pad_token_id
    trainer.save_model(training_args.output_dir)
    tokenizer.save_pretrained(training_args.output_dir)

    # model card with dataset and recipe provenance
    prov = provenance(script_args, model_args, cfg)
    if trainer.accelerator.is_main_process:
        (Path(training_args.output_dir) / "agentinstruct_provenance.json").write_text(json.dumps(prov, indent=2))
        trainer.create_model_card(model_name=Path(training_args.output_dir).name,
                                  dataset_name=", ".join(s["path"] for s in prov["sources"]),
                                  tags=["agentinstruct", "generative-teaching", "sft"])
        card = Path(training_args.output_dir) / "README.md"
        with open(card, "a", encoding="utf-8") as fh:
            fh.write("\n## agentinstruct provenance\n\n")
            fh.write(f"- base model: `{prov['base_model']}`\n- recipe: `{prov['recipe']}`\n")
            for s in prov["sources"]:
                fh.write(f"- data: `{s['path']}` splits={s.get('splits') or 'all but rejected'} "
                         f"weight={s.get('weight', 1.0)} teacher={s.get('teacher')} recipe_hash={s.get('recipe_hash')}\n")
    if training_args.push_to_hub:
        trainer.push_to_hub(dataset_name=", ".join(s["path"] for s in prov["sources"]))
    return {"output_dir": training_args.output_dir, "global_step": trainer.state.global_step,
            "log_history": trainer.state.log_history}


if __name__ == "__main__":
    main()
