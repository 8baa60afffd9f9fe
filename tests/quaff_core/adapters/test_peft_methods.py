"""add_adapter: every PEFT method trains on the int8 base and loads as a plain PEFT adapter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch
from transformers import LlamaForCausalLM

from quaff_core.adapters.peft_layers import QuaffIA3Linear, QuaffLoraLinear, add_adapter
from quaff_core.calibration.calibrate import calibrate
from quaff_core.options.spec import PEFT_METHODS
from quaff_core.options.train_config import TrainConfig
from quaff_core.quant.convert import convert_to_quaff
from quaff_core.quant.linear import QuaffLinear

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import LlamaConfig, LlamaForCausalLM

# The same adapter on the int8 base and on the fp32 base it was quantized from: the losses differ
# by the int8 rounding of the base only (measured about 1e-3 on this model).
LOSS_TOLERANCE = 0.02


def ids(seed: int = 0) -> torch.Tensor:
    """Random token ids [2, 16] for the tiny Llama."""
    return torch.randint(0, 512, (2, 16), generator=torch.Generator().manual_seed(seed))


def quaff_model(tiny_llama: LlamaForCausalLM, config: TrainConfig) -> PeftModel:
    """The tiny Llama calibrated, converted to Quaff and wrapped with `config`'s adapter."""
    om = calibrate(tiny_llama, [ids(1)], strategy="top_abs", max_ratio=0.05)
    convert_to_quaff(tiny_llama, om)
    torch.manual_seed(0)
    return add_adapter(tiny_llama, config)


def train_steps(model: PeftModel, steps: int = 5, lr: float = 1e-2) -> list[float]:
    """A few AdamW steps on one batch through the PEFT model's forward; the losses."""
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr)
    losses = []
    for _ in range(steps):
        loss = model(ids(), labels=ids()).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(float(loss))
    return losses


CONFIGS = {
    "lora": TrainConfig(lora_r=4, lora_alpha=8.0),
    "lora_rslora": TrainConfig(lora_r=4, lora_alpha=8.0, use_rslora=True),
    "ia3": TrainConfig(peft_method="ia3"),
    "prefix_tuning": TrainConfig(peft_method="prefix_tuning", num_virtual_tokens=4),
    "prompt_tuning": TrainConfig(peft_method="prompt_tuning", num_virtual_tokens=4),
    "p_tuning": TrainConfig(peft_method="p_tuning", num_virtual_tokens=4),
}


def test_every_method_is_covered() -> None:
    assert {c.peft_method for c in CONFIGS.values()} == set(PEFT_METHODS)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_method_trains_on_int8_base(tiny_llama: LlamaForCausalLM, name: str) -> None:
    model = quaff_model(tiny_llama, CONFIGS[name])
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable
    assert not any("embed_tokens" in n or "norm" in n or "lm_head" in n for n in trainable)
    assert all(b.dtype == torch.int8 for n, b in model.named_buffers() if n.endswith(".weight"))
    losses = train_steps(model)
    assert losses[-1] < losses[0], losses


def test_lora_wraps_quaff_layers_and_rslora_scales(tiny_llama: LlamaForCausalLM) -> None:
    model = quaff_model(tiny_llama, CONFIGS["lora_rslora"])
    layers = [m for m in model.modules() if isinstance(m, QuaffLoraLinear)]
    assert len(layers) == 14
    assert all(m.scaling["default"] == pytest.approx(8.0 / 4**0.5) for m in layers)


def test_ia3_wraps_quaff_layers(tiny_llama: LlamaForCausalLM) -> None:
    model = quaff_model(tiny_llama, CONFIGS["ia3"])
    layers = [m for m in model.modules() if isinstance(m, QuaffIA3Linear)]
    assert len(layers) == 14
    assert all(isinstance(m.base_layer, QuaffLinear) for m in layers)
    assert {m.is_feedforward for m in layers} == {True, False}
    down = next(m for m in layers if m.is_feedforward)
    assert down.ia3_l["default"].shape == (1, down.in_features)  # scales the input


def test_dora_on_int8_base_is_refused(tiny_llama: LlamaForCausalLM) -> None:
    om = calibrate(tiny_llama, [ids(1)], strategy="top_abs", max_ratio=0.05)
    convert_to_quaff(tiny_llama, om)
    config = TrainConfig(use_dora=True, quantization="none")
    with pytest.raises(ValueError, match="DoRA needs the base weight in full precision"):
        add_adapter(tiny_llama, config)


def test_dora_on_unquantized_base_trains(tiny_llama: LlamaForCausalLM) -> None:
    model = add_adapter(tiny_llama, TrainConfig(use_dora=True, quantization="none", lora_r=4))
    assert any("lora_magnitude_vector" in n for n, _ in model.named_parameters())
    losses = train_steps(model)
    assert losses[-1] < losses[0]


LOAD_SCRIPT = """
import json, sys
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM
base = AutoModelForCausalLM.from_pretrained(sys.argv[1])
model = PeftModel.from_pretrained(base, sys.argv[2]).eval()
ids = torch.tensor(json.loads(sys.argv[3]))
with torch.no_grad():
    loss = float(model(ids, labels=ids).loss)
assert "quaff_core" not in sys.modules
print(json.dumps({"loss": loss, "type": model.peft_config["default"].peft_type.value}))
"""


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_saved_adapter_loads_without_quaff_with_same_loss(
    tiny_llama: LlamaForCausalLM, tiny_llama_config: LlamaConfig, tmp_path: Path, name: str
) -> None:
    torch.manual_seed(0)  # the same weights as the tiny_llama fixture
    LlamaForCausalLM(tiny_llama_config).save_pretrained(tmp_path / "base")
    model = quaff_model(tiny_llama, CONFIGS[name])
    train_steps(model, steps=3)
    model.eval()
    batch = ids(7)
    with torch.no_grad():
        quaff_loss = float(model(batch, labels=batch).loss)
    model.save_pretrained(str(tmp_path / "adapter"))
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            LOAD_SCRIPT,
            str(tmp_path / "base"),
            str(tmp_path / "adapter"),
            json.dumps(batch.tolist()),
        ],
        capture_output=True,
        text=True,
        cwd=Path("/"),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    # PEFT types peft_type as `str | PeftType | None`; a built config holds the PeftType
    assert loaded["type"] == model.peft_config["default"].peft_type.value  # type: ignore[union-attr]
    assert abs(loaded["loss"] - quaff_loss) < LOSS_TOLERANCE, (loaded["loss"], quaff_loss)
