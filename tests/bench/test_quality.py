"""Quality-parity helpers: one TrainConfig for every mode, validation loss before training."""

from __future__ import annotations

import torch

from bench.quality import parse_args, train_config, validation_loss
from quaff_core.data import Example, Message
from quaff_core.models import load_tiny_llama
from quaff_core.tokenize import PadCollator, tokenize_examples


def test_modes_share_every_hyperparameter_but_quantization() -> None:
    args = parse_args([])
    configs = {mode: train_config(args, mode).to_dict() for mode in ("fp32", "quaff", "w8a8")}
    assert configs["fp32"]["quantization"] == "none"
    assert configs["quaff"]["quantization"] == configs["w8a8"]["quantization"] == "quaff"
    for config in configs.values():
        config.pop("quantization")
    assert configs["fp32"] == configs["quaff"] == configs["w8a8"]


def test_validation_loss_is_the_token_weighted_answer_loss() -> None:
    model, tokenizer = load_tiny_llama()
    examples = [
        Example(
            format="chat",
            line=i + 1,
            messages=(Message("user", f"day {i}"), Message("assistant", "2023-07-1" + str(i))),
        )
        for i in range(3)
    ]
    config = train_config(parse_args(["--batch", "8", "--max-seq-len", "256"]), "fp32")
    got = validation_loss(model, tokenizer, examples, config)
    rows = tokenize_examples(examples, tokenizer, max_seq_length=256)
    batch = PadCollator(int(tokenizer.pad_token_id))([rows[i] for i in range(3)])
    with torch.no_grad():
        expected = model(**batch).loss  # HF: mean over all labelled tokens of the batch
    assert abs(got["valid_loss"] - float(expected)) < 1e-4
    assert 0.0 <= got["valid_token_accuracy"] <= 1.0
    assert model.training  # mode restored
