"""The bounded request queue and the one device thread that drains it, batching where it can.

Requests for the same model with the same sampling settings (and no seed) that wait together
run as one `generate` batch, up to `max_batch` sequences. Tasks (evaluations, exports) run on
the same thread, so the device is used by one thing at a time in this process; with a
`DeviceTurnstile` it is shared with a training worker: a batch holds the device to its end, and
training yields to a waiting batch within its step (`worker.device_share`).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from peft import PeftModel

from infer.cache import ModelCache, ModelUnavailable, Target, activate
from infer.generate import Row, Sampling, TokenEvent, generate_rows
from infer.prompts import encode_prompts
from quaff_core.data.generation_request import GenerationRequest, RequestError
from store.device_lock import DeviceTurnstile
from store.model_refs import ModelRef

logger = logging.getLogger(__name__)

Emit = Callable[[str, Any], None]


class QueueFull(RuntimeError):
    """The queue holds `queue_size` requests already (the caller gets 429 + Retry-After)."""


@dataclass
class GenerationWork:
    """One request: what to generate, on which model, and where its events go.

    Events: ("start", (tokenizer, prompt_tokens, prompts)), ("token", (index, TokenEvent)),
    ("error", (status, message, param, code)), ("end", None).
    """

    request: GenerationRequest
    ref: ModelRef
    emit: Emit
    cancelled: threading.Event = field(default_factory=threading.Event)

    @property
    def n_rows(self) -> int:
        """Sequences this request generates."""
        return self.request.n_prompts * self.request.n

    def batch_key(self) -> tuple[Any, ...] | None:
        """Requests with equal keys may share a batch; None: runs alone (it has a seed)."""
        r = self.request
        if r.seed is not None:
            return None
        sampling = (r.temperature, r.top_p, r.stop, r.logprobs, r.top_logprobs)
        return (self.ref.name, self.ref.sha256, *sampling)

    def fail(
        self, status: int, message: str, param: str | None = None, code: str | None = None
    ) -> None:
        """End the request with an error."""
        self.emit("error", (status, message, param, code))


@dataclass
class TaskWork:
    """A job for the device thread: `run(cache)`; it reports its own outcome."""

    name: str
    run: Callable[[ModelCache], None]


Work = GenerationWork | TaskWork


class Scheduler:
    """A bounded queue of work and the device thread that runs it."""

    def __init__(
        self,
        cache: ModelCache,
        *,
        queue_size: int,
        max_batch: int,
        turnstile: DeviceTurnstile | None = None,
    ) -> None:
        self.cache = cache
        self.queue_size = queue_size
        self.max_batch = max_batch
        self.turnstile = turnstile
        self._items: deque[Work] = deque()
        self._cond = threading.Condition()
        self._busy = 0
        self._stopping = False
        self.batches_run = 0
        self._thread = threading.Thread(target=self._loop, name="quaff-infer-device", daemon=True)

    def start(self) -> None:
        """Start the device thread."""
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the current batch."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout=timeout)

    def depth(self) -> int:
        """Requests waiting plus those running."""
        with self._cond:
            return len(self._items) + self._busy

    def submit(self, work: Work) -> None:
        """Queue `work`; QueueFull when `queue_size` requests wait already."""
        with self._cond:
            if len(self._items) >= self.queue_size:
                raise QueueFull(f"{len(self._items)} requests are waiting")
            self._items.append(work)
            self._cond.notify()

    def _take(self) -> list[Work] | None:
        """The next batch: the oldest work plus waiting requests that can share its batch."""
        with self._cond:
            while not self._items and not self._stopping:
                self._cond.wait()
            if self._stopping:
                return None
            first = self._items.popleft()
            batch: list[Work] = [first]
            if isinstance(first, GenerationWork) and (key := first.batch_key()) is not None:
                rows = first.n_rows
                for item in list(self._items):
                    if (
                        isinstance(item, GenerationWork)
                        and item.batch_key() == key
                        and rows + item.n_rows <= self.max_batch
                    ):
                        self._items.remove(item)
                        batch.append(item)
                        rows += item.n_rows
            self._busy = len(batch)
            return batch

    def _loop(self) -> None:
        while (batch := self._take()) is not None:
            try:
                first = batch[0]
                if isinstance(first, TaskWork):
                    self._run_task(first)
                else:
                    self._run_generation([w for w in batch if isinstance(w, GenerationWork)])
            finally:
                with self._cond:
                    self._busy = 0

    def _device(self) -> Any:
        """Hold the device turnstile (when sharing the device with training) around a batch."""
        if self.turnstile is None:
            return nullcontext()
        return _Held(self.turnstile)

    def _run_task(self, task: TaskWork) -> None:
        try:
            with self._device():
                task.run(self.cache)
        except Exception:  # a task reports its own failure; never kill the device thread
            logger.exception("task %s failed", task.name)

    def _run_generation(self, works: list[GenerationWork]) -> None:
        try:
            target = self.cache.get(works[0].ref)
        except ModelUnavailable as exc:
            for work in works:
                work.fail(
                    400,
                    f"The model '{work.ref.name}' cannot be loaded here: {exc}",
                    "model",
                    "model_not_available",
                )
            return
        except Exception as exc:
            logger.exception("loading %s failed", works[0].ref.name)
            for work in works:
                work.fail(500, f"Loading the model failed ({type(exc).__name__})")
            return
        rows = self._rows(works, target)
        if not rows:
            return
        try:
            self._generate(target, rows, works[0].request)
            self.batches_run += 1
        except Exception as exc:
            logger.exception("generation failed")
            for work in works:
                work.fail(500, f"Generation failed ({type(exc).__name__}: {exc})")
            return
        for work in works:
            work.emit("end", None)

    def _rows(self, works: list[GenerationWork], target: Target) -> list[Row]:
        tokenizer = target.base.tokenizer
        rows: list[Row] = []
        for work in works:
            request = work.request
            try:
                prompts = encode_prompts(request, tokenizer, target.base.model)
            except RequestError as exc:
                work.fail(400, exc.message, exc.param)
                continue
            texts = [p.text for p in prompts]
            work.emit("start", (tokenizer, sum(len(p.ids) for p in prompts), texts))
            for p_index, prompt in enumerate(prompts):
                for j in range(request.n):
                    index = p_index * request.n + j
                    rows.append(
                        Row(
                            prompt.ids,
                            request.max_tokens,
                            _sink(work.emit, index),
                            stop=request.stop,
                            cancelled=work.cancelled,
                        )
                    )
        return rows

    def _generate(self, target: Target, rows: list[Row], request: GenerationRequest) -> None:
        model = activate(target)
        plain = target.adapter is None and isinstance(model, PeftModel)
        sampling = Sampling(
            temperature=request.temperature,
            top_p=request.top_p,
            seed=request.seed,
            top_logprobs=request.top_logprobs,
            logprobs=request.logprobs,
        )
        # interactive: the batch keeps the device to its end (training yields inside its step)
        with self._device(), model.disable_adapter() if plain else nullcontext():
            generate_rows(model, target.base.tokenizer, rows, sampling)


class _Held:
    """Holds the device turnstile for a `with` block."""

    def __init__(self, turnstile: DeviceTurnstile) -> None:
        self.turnstile = turnstile

    def __enter__(self) -> None:
        self.turnstile.acquire()

    def __exit__(self, *exc: object) -> None:
        self.turnstile.release()


def _sink(emit: Emit, index: int) -> Callable[[TokenEvent], None]:
    def sink(event: TokenEvent) -> None:
        emit("token", (index, event))

    return sink
