"""The base's general calibration set: one set, tokenised the same way for every job method."""

from __future__ import annotations

import pytest

from quaff_core.models.loading import load_base_model
from quaff_core.options.train_config import TrainConfig
from quaff_core.training.prepare import base_calibration_config, general_calibration_set


@pytest.mark.parametrize("method", ["supervised", "dpo", "reinforcement"])
def test_the_general_set_tokenises_as_chat_for_every_method(method: str) -> None:
    _, tokenizer = load_base_model("tiny-llama")
    supervised = TrainConfig(method="supervised", max_seq_length=64)
    config, data = general_calibration_set(TrainConfig(method=method, max_seq_length=64), tokenizer)  # type: ignore[arg-type]
    _, expected = general_calibration_set(supervised, tokenizer)
    assert config == base_calibration_config(supervised)
    assert config.method == "supervised"
    assert config.train_on_inputs
    assert len(data) == config.calibration_examples > 0
    assert [e.input_ids for e in data.examples] == [e.input_ids for e in expected.examples]
