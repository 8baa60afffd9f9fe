"""The judge of `score_model` and `label_model` graders: a model this service serves (a base or
a fine-tuned model of the project), asked through an inference node's chat."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import httpx
from sqlalchemy.orm import Session

from quaff_core.graders.model_graders import JudgeError, JudgeReply
from store import infer_nodes
from store.errors import StoreError
from store.model_refs import resolve_model
from store.settings import Settings

GENERATE_PATH = "/internal/v1/generate"


class NodeJudge:
    """Asks the project's models through the live inference nodes (the least busy first)."""

    def __init__(
        self,
        factory: Callable[[], AbstractContextManager[Session]],
        settings: Settings,
        project_id: str,
    ) -> None:
        self.factory, self.settings, self.project_id = factory, settings, project_id

    def serves(self, model: str) -> bool:
        """Whether `model` names a base or a fine-tuned model of the project."""
        with self.factory() as session:
            try:
                resolve_model(session, self.settings, self.project_id, model)
            except StoreError:
                return False
        return True

    def __call__(
        self, model: str, messages: list[dict[str, str]], sampling: dict[str, Any]
    ) -> JudgeReply:
        """The model's reply to the chat; JudgeError when no node answers it."""
        with self.factory() as session:
            try:
                ref = resolve_model(session, self.settings, self.project_id, model)
            except StoreError as exc:
                raise JudgeError(exc.message) from None
            nodes = infer_nodes.live_nodes(session, self.settings.infer_lease_seconds)
            ranked = infer_nodes.rank_nodes(nodes, ref.keys())
            targets = [(node.url, node.token) for node in ranked]
        body = {"model": model, "messages": messages, **sampling}
        payload = {"kind": "chat", "body": body, "model": ref.wire()}
        problem = "no inference process is running (start one with `quaff infer`)"
        for url, token in targets:
            try:
                response = httpx.post(
                    f"{url}{GENERATE_PATH}",
                    json=payload,
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=self.settings.infer_timeout_seconds,
                )
            except httpx.HTTPError as exc:
                problem = f"inference node unreachable: {exc}"
                continue
            if response.status_code != 200:
                problem = f"the inference node answered HTTP {response.status_code}"
                continue
            answer = response.json()
            text = answer["choices"][0]["message"].get("content") or ""
            return JudgeReply(text, int((answer.get("usage") or {}).get("total_tokens", 0)))
        raise JudgeError(problem)
