"""The posting routes read their credentials by hand (`posting_source`), not through `Header()` parameters: their
OpenAPI document must still declare the two headers, as FastAPI does for intake's other routes."""

from typing import Any

from services.intake.main import create_app


def test_the_posting_routes_declare_the_credential_headers_as_fastapi_does() -> None:
    paths: dict[str, Any] = create_app().openapi()["paths"]
    generated = [p for p in paths["/v1/warnings/{warning_id}"]["get"]["parameters"] if p["in"] == "header"]
    assert [p["name"] for p in generated] == ["authorization", "x-api-key"]
    for path in ("/v1/warnings", "/v1/warnings/batch"):
        assert paths[path]["post"]["parameters"] == generated, path
