"""Schemathesis against the app's own OpenAPI schema, in process, with a key so writes are covered.

Bounded: a fixed number of examples per operation and generation mode, with a fixed seed
(derandomized), so CI time and inputs are stable. Asserts no server error, and that responses
and status codes match what the schema declares. (schemathesis's own pytest loader does not run
under pytest 9, so the operations are driven here with Hypothesis directly.)
"""

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

# Not negative_data_rejection: a multipart form sends every value as text, so "a number where a
# string is declared" arrives as a valid string, and the check reports that as accepted bad data.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = 25


@pytest.fixture
def fuzzed_api(start_api, corpus):
    api = start_api(write_rate_per_minute=0, auth_failures_per_minute=0)  # limits are tested elsewhere
    assert api.index(corpus[:3], ["c", "c", "d"]).status_code == 200
    return api


def test_no_server_errors_and_responses_match_the_schema(fuzzed_api):
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzzed_api.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    failures = {}
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                      suppress_health_check=list(HealthCheck))
            def fuzz(case):
                case.call_and_validate(headers=fuzzed_api.auth, checks=CHECKS)

            try:
                fuzz()
            except Unsatisfiable:  # nothing to make invalid: the operation takes no parameters
                assert mode is GenerationMode.NEGATIVE and not operation.query and not operation.body
            except Exception as exc:  # noqa: BLE001 - collect every operation's failure, then report them all
                failures[f"{operation.label} ({mode.value})"] = f"{type(exc).__name__}: {exc}"[:3000]
    assert not failures, "\n\n".join(f"{label}\n{text}" for label, text in failures.items())
    assert fuzzed_api.client.get("/healthz").json() == {"status": "ok"}
