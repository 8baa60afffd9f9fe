"""Generate a batch of sequences with transformers' `generate`, streaming each row as it goes.

One `generate` call runs every row of a batch (left-padded prompts). `RowStreamer`, a
transformers `BaseStreamer`, receives each step's tokens and hands every row its text through
a per-row `TextStreamer` (transformers' incremental detokeniser); `RowLimits`, a
`StoppingCriteria`, ends a row at its own token limit, stop string or cancellation.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from transformers import (
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    PreTrainedTokenizerBase,
    StoppingCriteria,
    StoppingCriteriaList,
    TemperatureLogitsWarper,
    TextStreamer,
    TopPLogitsWarper,
)
from transformers.generation.streamers import BaseStreamer


@dataclass(frozen=True)
class TokenEvent:
    """One generated token of a row: its text delta (maybe ""), logprobs, and the end reason."""

    token_id: int | None
    text: str
    logprob: float | None = None
    top: tuple[tuple[int, float], ...] = ()
    finish_reason: str | None = None


@dataclass
class Row:
    """One sequence to generate: prompt token ids, its limit, stops, and where its events go."""

    input_ids: list[int]
    max_new_tokens: int
    sink: Callable[[TokenEvent], None]
    stop: tuple[str, ...] = ()
    cancelled: threading.Event = field(default_factory=threading.Event)
    n_generated: int = 0
    done: bool = False


@dataclass(frozen=True)
class Sampling:
    """How every row of a batch picks its tokens (rows of one batch share it)."""

    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    top_logprobs: int = 0
    logprobs: bool = False

    @property
    def greedy(self) -> bool:
        """Temperature 0: argmax."""
        return self.temperature == 0.0


class LogprobRecorder(LogitsProcessor):
    """Keeps log-softmax of each step's raw scores (first in the list, so before any warping)."""

    def __init__(self) -> None:
        self.last: torch.Tensor | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """scores [B, V] -> unchanged; float32 log-probabilities kept in `last`."""
        self.last = torch.log_softmax(scores.float(), dim=-1)
        return scores


class _RowText(TextStreamer):
    """transformers' incremental detokeniser for one row; collects what it would print."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        super().__init__(tokenizer, skip_prompt=False, skip_special_tokens=True)
        self.pending = ""

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        """Collect text instead of printing it."""
        self.pending += text

    def take(self) -> str:
        """The text finalised since the last call."""
        text, self.pending = self.pending, ""
        return text


class _StopText:
    """Holds back the last characters, which may begin a stop string."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = tuple(stops)
        self.keep = max((len(s) for s in self.stops), default=1) - 1
        self.held = ""

    def feed(self, text: str) -> str:
        """The text safe to emit now (what cannot start a stop string)."""
        self.held += text
        cut = max(len(self.held) - self.keep, 0)
        out, self.held = self.held[:cut], self.held[cut:]
        return out

    def flush(self) -> str:
        """Everything still held (the row ended without a stop string)."""
        out, self.held = self.held, ""
        return out


class RowStreamer(BaseStreamer):
    """Receives each step's tokens [B] (after the prompt [B, T]) and routes them row by row."""

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        rows: Sequence[Row],
        recorder: LogprobRecorder | None,
        sampling: Sampling,
    ) -> None:
        self.rows = list(rows)
        self.recorder = recorder
        self.sampling = sampling
        self.tokenizer = tokenizer
        self.texts = [_RowText(tokenizer) for _ in rows]
        self.stops = [_StopText(r.stop) for r in rows]
        self.ids: list[list[int]] = [[] for _ in rows]
        self.sent = ["" for _ in rows]
        self.full = ["" for _ in rows]
        eos = tokenizer.eos_token_id
        self.eos_ids = {eos} if isinstance(eos, int) else set(eos or [])
        self.prompt_seen = False

    def _logprobs(self, i: int, token: int) -> tuple[float | None, tuple[tuple[int, float], ...]]:
        if self.recorder is None or self.recorder.last is None:
            return None, ()
        row = self.recorder.last[i]
        top: tuple[tuple[int, float], ...] = ()
        if self.sampling.top_logprobs:
            values, ids = row.topk(self.sampling.top_logprobs)
            top = tuple(zip(ids.tolist(), values.tolist(), strict=True))
        return float(row[token]), top

    def _emit(self, i: int, token: int | None, text: str, lp: tuple, reason: str | None) -> None:
        self.sent[i] += text
        if reason is not None:
            self.rows[i].done = True
        self.rows[i].sink(TokenEvent(token, text, lp[0], lp[1], finish_reason=reason))

    def _stopped_at(self, i: int) -> int | None:
        """Where the first stop string starts in the row's whole decoded text (None: nowhere)."""
        if not self.rows[i].stop:
            return None
        full = str(self.tokenizer.decode(self.ids[i], skip_special_tokens=True))
        hits = [j for stop in self.rows[i].stop if (j := full.find(stop)) >= 0]
        if not hits:
            return None
        self.full[i] = full
        return min(hits)

    def _step(self, i: int, token: int) -> None:
        row = self.rows[i]
        row.n_generated += 1
        lp = self._logprobs(i, token) if self.sampling.logprobs else (None, ())
        if token in self.eos_ids:
            self.texts[i].end()
            self._emit(i, token, self.stops[i].flush() + self.texts[i].take(), lp, "stop")
            return
        self.ids[i].append(token)
        self.texts[i].put(torch.tensor([token]))
        cut = self._stopped_at(i)
        if cut is not None:
            self._emit(i, token, self.full[i][len(self.sent[i]) : max(cut, len(self.sent[i]))],
                       lp, "stop")  # fmt: skip
            return
        text = self.stops[i].feed(self.texts[i].take())
        if row.n_generated >= row.max_new_tokens:
            self.texts[i].end()
            self._emit(i, token, text + self.stops[i].feed(self.texts[i].take())
                       + self.stops[i].flush(), lp, "length")  # fmt: skip
        else:
            self._emit(i, token, text, lp, None)

    def put(self, value: torch.Tensor) -> None:
        """The prompt first (ignored), then one token per row per step."""
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        for i, token in enumerate(value.reshape(-1).tolist()):
            if not self.rows[i].done:
                self._step(i, int(token))

    def end(self) -> None:
        """generate returned: rows still open ended by length (or were cancelled)."""
        for i, row in enumerate(self.rows):
            if not row.done:
                self.texts[i].end()
                tail = self.stops[i].feed(self.texts[i].take()) + self.stops[i].flush()
                self._emit(i, None, tail, (None, ()), "length")


class RowLimits(StoppingCriteria):
    """Ends rows that are done (EOS, stop string, own limit) or cancelled."""

    def __init__(self, rows: Sequence[Row]) -> None:
        self.rows = list(rows)

    def __call__(
        self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: object
    ) -> torch.BoolTensor:
        """[B] bool: which rows are finished."""
        flags = [r.done or r.cancelled.is_set() for r in self.rows]
        return torch.tensor(flags, dtype=torch.bool, device=input_ids.device)  # type: ignore[return-value]


def _batch(rows: Sequence[Row], pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Left-padded input_ids and attention_mask, int64 [B, T]."""
    width = max(len(r.input_ids) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        n = len(row.input_ids)
        ids[i, width - n :] = torch.tensor(row.input_ids, dtype=torch.long)
        mask[i, width - n :] = 1
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device)}


def generate_rows(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    rows: Sequence[Row],
    sampling: Sampling,
) -> None:
    """Run `generate` once for all `rows`; every row's sink gets its tokens and a final event."""
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = next(model.parameters()).device
    recorder = LogprobRecorder() if sampling.logprobs else None
    processors: list[LogitsProcessor] = [recorder] if recorder is not None else []
    if not sampling.greedy:
        processors += [TemperatureLogitsWarper(sampling.temperature)]
        if sampling.top_p < 1.0:
            processors += [TopPLogitsWarper(sampling.top_p)]
    config = GenerationConfig(
        max_new_tokens=max(r.max_new_tokens for r in rows),
        do_sample=not sampling.greedy,
        top_k=None,
        top_p=None,
        temperature=None,
        pad_token_id=pad_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    streamer = RowStreamer(tokenizer, rows, recorder, sampling)
    if sampling.seed is not None:
        torch.manual_seed(sampling.seed)
    with torch.inference_mode():
        model.generate(  # type: ignore[operator]
            **_batch(rows, pad_id, device),
            generation_config=config,
            logits_processor=LogitsProcessorList(processors),
            stopping_criteria=StoppingCriteriaList([RowLimits(rows)]),
            streamer=streamer,
        )
