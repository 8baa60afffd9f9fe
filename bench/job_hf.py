"""Whole-job baseline: plain HF `Trainer` + PEFT LoRA under bf16 autocast, load to saved adapter.

    .venv/bin/python -m bench.job_hf --model SmolLM2-135M-Instruct --data train.jsonl \
        --output out/hf --steps 24 --batch-size 8

What a user would otherwise run: the fp32 base with a PEFT LoRA (same rank, alpha, targets),
`Trainer(bf16=True)` (torch.autocast on CPU), HF's own loss, AdamW, the same learning rate,
schedule, clipping, seed and steps as `quaff train`'s defaults. Examples are tokenised and masked
exactly as `quaff train` does (assistant turns only), so both train on the same tokens. Prints one
JSON line: the wall time from process start to the saved adapter, steps, tokens and final loss.
"""

from __future__ import annotations

import argparse
import json
import time

START = time.monotonic()  # before the heavy imports: the job's wall time includes them

import torch  # noqa: E402
from peft import LoraConfig, get_peft_model  # noqa: E402
from transformers import Trainer, TrainingArguments  # noqa: E402

from quaff_core.data.jsonl import read_examples  # noqa: E402
from quaff_core.lm.tokenization import PadCollator, tokenize_examples  # noqa: E402
from quaff_core.models.loading import load_base_model  # noqa: E402
from quaff_core.options.spec import BASE_LORA_LEARNING_RATE, default  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--batch-size", type=int, required=True)
    p.add_argument("--no-bf16", dest="bf16", action="store_false", help="fp32 instead")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Load, tokenise, train, save; print the JSON summary."""
    args = parse_args(argv)
    model, tokenizer = load_base_model(args.model)
    dataset = tokenize_examples(
        read_examples(args.data),
        tokenizer,
        max_seq_length=int(default("max_seq_length")),
        train_on_inputs=default("train_on_inputs"),
    )
    lora = LoraConfig(
        r=int(default("lora_r")),
        lora_alpha=default("lora_alpha"),
        lora_dropout=float(default("lora_dropout")),
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(model, lora)
    training_args = TrainingArguments(
        output_dir=args.output,
        per_device_train_batch_size=args.batch_size,
        max_steps=args.steps,
        learning_rate=float(default("learning_rate") or BASE_LORA_LEARNING_RATE),
        lr_scheduler_type=str(default("lr_scheduler")),
        warmup_steps=float(default("warmup_ratio")),
        weight_decay=float(default("weight_decay")),
        max_grad_norm=float(default("max_grad_norm")),
        seed=int(default("seed")),
        bf16=args.bf16,
        use_cpu=not torch.cuda.is_available(),
        save_strategy="no",
        logging_steps=1,
        report_to=[],
        remove_unused_columns=False,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=peft_model,
        args=training_args,
        train_dataset=dataset,
        data_collator=PadCollator(tokenizer.pad_token_id),
    )
    result = trainer.train()
    peft_model.save_pretrained(args.output)
    trained = sum(len(ex.input_ids) for ex in dataset.examples[: args.steps * args.batch_size])
    print(
        json.dumps(
            {
                "wall_s": round(time.monotonic() - START, 2),
                "steps": result.global_step,
                "tokens": trained,
                "train_loss": result.training_loss,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
