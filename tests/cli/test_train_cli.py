"""Tests of `quaff calibrate`, `quaff train` and `quaff eval` on tiny-llama."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from cli.main import main
from cli.progress import TerminalCallbacks
from quaff_core.quant.outlier_map import OutlierMap
from quaff_core.train_events import EventKind, TrainEvent
from quaff_core.training.callbacks import ProgressEvent

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DATA = str(EXAMPLES / "chat.jsonl")
VALID = str(EXAMPLES / "chat_valid.jsonl")
SMALL = ["--batch-size", "4", "--max-seq-length", "160", "--lr", "3e-3", "--lora-r", "4"]


def test_calibrate_train_eval_and_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    map_path = tmp_path / "map.json"
    args = ["--model", "tiny-llama", "--data", DATA, "--output", str(map_path)]
    assert main(["calibrate", *args, "--strategy", "top_abs", "--max-ratio", "0.05"]) == 0
    assert "Found" in capsys.readouterr().out
    outlier_map = OutlierMap.load(map_path)
    assert outlier_map.num_channels > 0
    assert outlier_map.model_id == "tiny-llama"

    out = tmp_path / "run"
    train_args = ["--model", "tiny-llama", "--data", DATA, "--validation", VALID]
    code = main(
        [
            "train",
            *train_args,
            "--output",
            str(out),
            "--outlier-map",
            str(map_path),
            "--max-steps",
            "3",
            "--save-steps",
            "2",
            *SMALL,
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    # not a TTY: one plain line per step, no carriage returns
    assert "\r" not in printed
    assert "Reusing outlier map" in printed
    assert "Step 1/3: training loss=" in printed
    assert "Step 3/3: training loss=" in printed
    assert "validation loss=" in printed
    assert f"Checkpoint saved at step 2: {out / 'checkpoints' / 'checkpoint-2'}" in printed
    assert f"adapter saved to {out / 'adapter'}" in printed
    facts = json.loads((out / "adapter" / "quaff.json").read_text())
    assert facts["quantization"]["method"] == "quaff"
    assert facts["quantization"]["outlier_channels"] == outlier_map.num_channels
    valid_loss = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["valid_loss"]

    eval_args = ["eval", "--model", "tiny-llama", "--data", VALID, "--max-seq-length", "160"]
    assert main([*eval_args, "--adapter", str(out), "--json"]) == 0
    trained = json.loads(capsys.readouterr().out)
    # eval resolves compute_dtype "auto" as training did (bf16 on a CPU with native bf16)
    assert trained["loss"] == pytest.approx(valid_loss, abs=1e-4)
    assert main(eval_args) == 0
    assert capsys.readouterr().out.startswith("loss=")

    # resuming picks the newest checkpoint and the options it was trained with
    assert (
        main(
            [
                "train",
                "--model",
                "tiny-llama",
                "--data",
                DATA,
                "--output",
                str(out),
                "--resume",
                str(out),
            ]
        )
        == 0
    )
    assert "Trained 3 steps" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--lr", "5"], "--lr: 5.0 is out of range; it must be in (0, 1]"),
        (["train", "--epochs", "0"], "--epochs: 0 is out of range; it must be in [1, 50]"),
        (["train", "--model", "nope"], "unknown base model 'nope'"),
        (["train", "--data", "missing.jsonl"], "training file 'missing.jsonl' does not exist"),
        (["train", "--data", "BAD"], "line 2: invalid JSON"),
        (["train", "--outlier-map", "none.json"], "--outlier-map 'none.json' does not exist"),
        (["train", "--resume", "."], "no checkpoint there"),
        (["train", "--method", "reinforcement"], "--method reinforcement needs a grader"),
        (["eval", "--adapter", "."], "holds no adapter"),
        (
            ["calibrate", "--max-ratio", "2"],
            "--max-ratio: 2.0 is out of range; it must be in (0, 0.5]",
        ),
    ],
)
def test_bad_arguments_get_a_one_line_error(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "BAD").write_text('{"text": "a"}\n{bad\n')
    command, *extra = argv
    defaults = {"--model": "tiny-llama", "--data": DATA, "--output": str(tmp_path / "out")}
    for flag, value in defaults.items():
        if flag not in extra and not (command == "eval" and flag == "--output"):
            extra += [flag, value]
    assert main([command, *extra]) == 1
    err = capsys.readouterr().err
    last = err.splitlines()[-1]
    assert last.startswith(f"quaff {command}: error: ")
    assert message in last
    assert err.count("error") == 1
    assert "Traceback" not in err


def test_progress_bar_on_a_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    terminal = TerminalCallbacks(stream)
    terminal.on_progress(ProgressEvent(step=5, total_steps=10, epoch=0.5, train_loss=1.25))
    terminal.on_event(TrainEvent(EventKind.CHECKPOINT_SAVED, "Checkpoint saved at step 5"))
    terminal.on_event(TrainEvent(EventKind.MODEL_SAVED, "New fine-tuned model created"))
    text = stream.getvalue()
    assert text.startswith("\r[" + "#" * 12 + "." * 12 + "] 5/10 loss 1.2500")
    assert text.endswith("\nNew fine-tuned model created\n")
    assert "Checkpoint saved" not in text
    assert terminal.control() == "continue"


def test_train_an_ia3_adapter_then_continue_from_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["train", "--model", "tiny-llama", "--data", DATA, "--max-steps", "2"]
    flags = [
        "--batch-size",
        "4",
        "--max-seq-length",
        "160",
        "--lr",
        "3e-2",
        "--strategy",
        "top_abs",
    ]
    first = tmp_path / "first"
    assert main([*base, "--output", str(first), "--peft-method", "ia3", *flags]) == 0
    config = json.loads((first / "adapter" / "adapter_config.json").read_text())
    assert config["peft_type"] == "IA3"
    capsys.readouterr()
    second = ["--output", str(tmp_path / "second"), "--start-from", str(first)]
    assert main([*base, *second, "--peft-method", "ia3", *flags]) == 0
    printed = capsys.readouterr().out
    assert "Reusing outlier map" in printed  # the map came with the adapter
    assert "Calibrating" not in printed
    wrong = ["--output", str(tmp_path / "third"), "--start-from", str(first)]
    assert main([*base, *wrong, "--peft-method", "lora", *flags]) != 0
