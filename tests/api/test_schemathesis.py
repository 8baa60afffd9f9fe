"""Property-based requests from /openapi.json (schemathesis), bounded: valid and invalid inputs for
every operation, with the auth header, never get a 5xx and always answer as documented."""

from __future__ import annotations

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.helpers import KeyedProject

pytestmark = pytest.mark.slow
EXAMPLES = 12
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_generated_requests_never_fail_the_server(
    app: FastAPI, keyed_project: KeyedProject, mode: GenerationMode
) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok)  # every operation of the schema loads
        operations.append(result.ok())
    assert len(operations) > 15
    for operation in operations:
        strategy = operation.as_strategy(generation_mode=mode)

        @given(case=strategy)
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=keyed_project.headers, checks=CHECKS)

        try:
            check()
        except Unsatisfiable:  # nothing invalid can be sent to an operation without inputs
            assert mode == GenerationMode.NEGATIVE, operation.label
