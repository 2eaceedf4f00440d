"""The vendors' OpenAPI documents, cut to the part the sandboxes serve (README.md here names their sources)."""

from pathlib import Path

HERE = Path(__file__).resolve().parent
JIRA_SPEC = HERE / "jira-cloud-platform.openapi.json"
LEOSTREAM_SPEC = HERE / "leostream-rest-v1.openapi.json"
