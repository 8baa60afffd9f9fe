"""add_lora on a converted tiny Llama: training gradients, frozen int8 base, portable adapters."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch
from peft import LoraConfig, PeftModel
from transformers import LlamaForCausalLM

from quaff_core.adapters.peft_layers import QuaffLoraLinear, add_lora
from quaff_core.calibration.calibrate import calibrate
from quaff_core.quant.convert import convert_to_quaff, quaff_state_dict
from quaff_core.quant.linear import QuaffLinear

if TYPE_CHECKING:
    from transformers import LlamaConfig, LlamaForCausalLM


def ids(seed: int = 0) -> torch.Tensor:
    """Random token ids [2, 16] for the tiny Llama."""
    return torch.randint(0, 512, (2, 16), generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def quaff_lora(tiny_llama: LlamaForCausalLM) -> PeftModel:
    """The tiny Llama, calibrated, converted and wrapped with LoRA r=4."""
    om = calibrate(tiny_llama, [ids(1)], strategy="top_abs", max_ratio=0.05)
    convert_to_quaff(tiny_llama, om)
    return add_lora(tiny_llama, r=4, alpha=8)


def test_all_linear_selects_converted_layers(quaff_lora: PeftModel) -> None:
    lora_layers = [m for m in quaff_lora.modules() if isinstance(m, QuaffLoraLinear)]
    assert len(lora_layers) == 14
    assert all(isinstance(m.base_layer, QuaffLinear) for m in lora_layers)
    config = quaff_lora.peft_config["default"]
    assert isinstance(config, LoraConfig)
    targets = config.target_modules
    assert targets is not None
    assert "lm_head" not in targets
    assert {"q_proj", "down_proj"} <= set(targets)
    trainable = [n for n, p in quaff_lora.named_parameters() if p.requires_grad]
    assert trainable
    assert all("lora_" in n for n in trainable)


def test_training_step_updates_lora_only(quaff_lora: PeftModel) -> None:
    base = {k: v.clone() for k, v in quaff_lora.state_dict().items() if k.endswith(".weight")}
    quaff_lora.train()
    opt = torch.optim.AdamW([p for p in quaff_lora.parameters() if p.requires_grad], lr=1e-2)
    loss = quaff_lora(ids(), labels=ids()).loss
    loss.backward()
    lora_params = [(n, p) for n, p in quaff_lora.named_parameters() if "lora_" in n]
    assert all(p.grad is not None for _, p in lora_params)
    assert any(
        p.grad is not None and float(p.grad.abs().sum()) > 0
        for n, p in lora_params
        if "lora_B" in n
    )
    opt.step()
    after = quaff_lora.state_dict()
    for key, value in base.items():
        if "base_layer.weight" in key:
            assert value.dtype == torch.int8
            assert torch.equal(after[key], value), key
    assert any(not torch.equal(after[k], v) for k, v in base.items() if "lora_A" in k)
    assert len(quaff_state_dict(quaff_lora)) == 3 * 14  # works through the PEFT wrapper


def test_adapter_loads_on_unquantized_base_without_quaff(
    quaff_lora: PeftModel, tiny_llama_config: LlamaConfig, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    LlamaForCausalLM(tiny_llama_config).save_pretrained(tmp_path / "base")
    with torch.no_grad():
        for name, p in quaff_lora.named_parameters():
            if "lora_B" in name:
                p.fill_(0.01)
    quaff_lora.save_pretrained(str(tmp_path / "adapter"))
    assert (tmp_path / "adapter" / "adapter_model.safetensors").exists()
    script = f"""
import sys
from peft import PeftModel
from transformers import AutoModelForCausalLM
base = AutoModelForCausalLM.from_pretrained({str(tmp_path / "base")!r})
model = PeftModel.from_pretrained(base, {str(tmp_path / "adapter")!r})
lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
assert len(lora_b) == 14, len(lora_b)
assert all(abs(float(p.mean()) - 0.01) < 1e-6 for p in lora_b)
assert "quaff_core" not in sys.modules
print("ok")
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=Path("/"), timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("ok")


def test_merge_is_refused(quaff_lora: PeftModel) -> None:
    with pytest.raises(NotImplementedError, match="merging"):
        quaff_lora.merge_and_unload()


def test_rejects_bad_rank(tiny_llama: LlamaForCausalLM) -> None:
    with pytest.raises(ValueError, match="r must be positive"):
        add_lora(tiny_llama, r=0)
