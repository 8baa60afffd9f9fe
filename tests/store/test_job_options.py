"""Job options: defaults filled in (never 'auto'), the request's learning rate kept as asked,
what the trainer's config refuses named by its param, unknown keys refused. (Each field's own
check is the API body's: tests/api/test_job_body.py.)"""

from __future__ import annotations

from typing import Any

import pytest

from store.errors import InvalidRequestError
from store.job_options import resolve_options


def test_defaults_are_resolved_numbers() -> None:
    options = resolve_options({"hyperparameters": {"n_epochs": "auto", "batch_size": "auto"}})
    assert options.hyperparameters == {
        "n_epochs": 3,
        "batch_size": 4,
        "learning_rate_multiplier": 1.0,
    }
    assert options.lora == {
        "r": 16,
        "alpha": 32.0,
        "dropout": 0.0,
        "target_modules": "all-linear",
        "use_rslora": False,
        "use_dora": False,
    }
    assert options.peft == {"method": "lora", "num_virtual_tokens": 20}
    assert options.method == "supervised"
    assert options.quantization["method"] == "quaff"
    assert options.quantization["outlier_map"] is None
    assert options.quantization["compute_dtype"] == "auto"
    assert options.quantization["compile"] == "auto"
    assert options.training["learning_rate"] is None  # not given: derived where a config is built
    assert options.config.learning_rate == pytest.approx(2e-4)
    assert options.training["max_seq_length"] == 1024


def test_multiplier_scales_the_base_rate_and_learning_rate_overrides_it() -> None:
    scaled = resolve_options(
        {
            "method": {
                "type": "supervised",
                "supervised": {"hyperparameters": {"learning_rate_multiplier": 2.0}},
            }
        }
    )
    assert scaled.training["learning_rate"] is None  # stored as asked: the multiplier
    assert scaled.hyperparameters["learning_rate_multiplier"] == 2.0
    assert scaled.config.learning_rate == pytest.approx(4e-4)
    absolute = resolve_options({"training": {"learning_rate": 1e-3}})
    assert absolute.training["learning_rate"] == pytest.approx(1e-3)
    assert absolute.config.learning_rate == pytest.approx(1e-3)
    with pytest.raises(InvalidRequestError) as exc:
        resolve_options(
            {
                "hyperparameters": {"learning_rate_multiplier": 2.0},
                "training": {"learning_rate": 1e-3},
            }
        )
    assert exc.value.param == "training.learning_rate"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"hyperparameters": {"n_epochs": 0}}, "hyperparameters.n_epochs"),
        ({"hyperparameters": {"n_epochs": 51}}, "hyperparameters.n_epochs"),
        ({"hyperparameters": {"batch_size": 257}}, "hyperparameters.batch_size"),
        ({"hyperparameters": {"batch_size": 2.5}}, "hyperparameters.batch_size"),
        (
            {"hyperparameters": {"learning_rate_multiplier": 0}},
            "hyperparameters.learning_rate_multiplier",
        ),
        ({"lora": {"r": 0}}, "lora.r"),
        ({"lora": {"r": 257}}, "lora.r"),
        ({"lora": {"r": True}}, "lora.r"),
        ({"lora": {"alpha": 0}}, "lora.alpha"),
        ({"lora": {"dropout": 1.0}}, "lora.dropout"),
        ({"lora": {"target_modules": []}}, "lora.target_modules"),
        ({"lora": {"target_modules": ["../x"]}}, "lora.target_modules"),
        ({"quantization": {"method": "gptq"}}, "quantization.method"),
        ({"quantization": {"outlier_strategy": "max"}}, "quantization.outlier_strategy"),
        ({"quantization": {"outlier_max_ratio": 0}}, "quantization.outlier_max_ratio"),
        ({"quantization": {"outlier_max_ratio": 0.6}}, "quantization.outlier_max_ratio"),
        ({"quantization": {"scale_beta": 1.5}}, "quantization.scale_beta"),
        ({"quantization": {"outlier_threshold": -1}}, "quantization.outlier_threshold"),
        ({"quantization": {"outlier_map": "om-x", "method": "none"}}, "quantization.outlier_map"),
        ({"training": {"learning_rate": 0}}, "training.learning_rate"),
        ({"training": {"learning_rate": 2}}, "training.learning_rate"),
        ({"training": {"max_seq_length": 15}}, "training.max_seq_length"),
        ({"training": {"max_seq_length": 32769}}, "training.max_seq_length"),
        ({"training": {"warmup_ratio": 1.0}}, "training.warmup_ratio"),
        ({"training": {"lr_scheduler": "step"}}, "training.lr_scheduler"),
        ({"training": {"train_on_inputs": "yes"}}, "training.train_on_inputs"),
        ({"training": {"n_checkpoints": 0}}, "training.n_checkpoints"),
        ({"training": {"weight_decay": float("nan")}}, "training.weight_decay"),
        ({"training": {"gradient_accumulation_steps": 0}}, "training.gradient_accumulation_steps"),
        ({"lora": {"rank": 8}}, "lora.rank"),
        ({"quantization": {"bits": 4}}, "quantization.bits"),
        ({"training": {"epochs": 2}}, "training.epochs"),
        ({"lora": [1]}, "lora"),
        ({"method": {"type": "rlhf"}}, "method.type"),
        ({"method": {"type": "reinforcement"}}, "method.reinforcement.grader"),
        ({"hyperparameters": {"compute_multiplier": 2}}, "hyperparameters.compute_multiplier"),
        ({"hyperparameters": {"beta": 0.1}}, "hyperparameters.beta"),
        (
            {"method": {"type": "supervised", "supervised": {"hyperparameters": {"beta": 0.1}}}},
            "method.supervised.hyperparameters.beta",
        ),
        (
            {"method": {"type": "dpo", "dpo": {"hyperparameters": {"beta": 0}}}},
            "method.dpo.hyperparameters.beta",
        ),
        ({"method": {"type": "dpo", "supervised": {}}}, "method.supervised"),
        ({"peft": {"method": "adalora"}}, "peft.method"),
        ({"peft": {"method": "prompt_tuning", "num_virtual_tokens": 0}}, "peft.num_virtual_tokens"),
        ({"lora": {"use_dora": True}}, "lora.use_dora"),
        ({"peft": {"method": "ia3"}, "lora": {"use_rslora": True}}, "lora.use_rslora"),
        (
            {
                "hyperparameters": {"n_epochs": 2},
                "method": {
                    "type": "supervised",
                    "supervised": {"hyperparameters": {"n_epochs": 3}},
                },
            },
            "hyperparameters",
        ),
    ],
)
def test_bad_option_names_its_param(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequestError) as exc:
        resolve_options(body)
    assert exc.value.param == param
    assert exc.value.status_code == 400
    assert param.split(".")[-1] in exc.value.message


def test_compute_dtype_and_compile_are_checked() -> None:
    fast = resolve_options({"quantization": {"compute_dtype": "bfloat16", "compile": True}})
    assert (fast.quantization["compute_dtype"], fast.quantization["compile"]) == ("bfloat16", True)
    for bad, param in (
        ({"compute_dtype": "float16"}, "quantization.compute_dtype"),
        ({"compile": 1}, "quantization.compile"),
        ({"compile": "yes"}, "quantization.compile"),
    ):
        with pytest.raises(InvalidRequestError) as exc:
            resolve_options({"quantization": bad})
        assert exc.value.param == param


def test_dpo_method_resolves_beta_and_openai_hyperparameters() -> None:
    options = resolve_options(
        {
            "method": {
                "type": "dpo",
                "dpo": {"hyperparameters": {"beta": 0.25, "n_epochs": 2, "batch_size": "auto"}},
            }
        }
    )
    assert options.method == "dpo"
    assert options.hyperparameters == {
        "n_epochs": 2,
        "batch_size": 4,
        "learning_rate_multiplier": 1.0,
        "beta": 0.25,
    }
    assert (options.config.method, options.config.dpo_beta) == ("dpo", 0.25)
    auto = resolve_options(
        {"method": {"type": "dpo", "dpo": {"hyperparameters": {"beta": "auto"}}}}
    )
    assert auto.hyperparameters["beta"] == 0.1


def test_peft_group_names_the_method_and_its_options() -> None:
    options = resolve_options({"peft": {"method": "prefix_tuning", "num_virtual_tokens": 8}})
    assert options.peft == {"method": "prefix_tuning", "num_virtual_tokens": 8}
    assert (options.config.peft_method, options.config.num_virtual_tokens) == ("prefix_tuning", 8)
    dora = resolve_options({"lora": {"use_dora": True}, "quantization": {"method": "none"}})
    assert dora.config.use_dora
