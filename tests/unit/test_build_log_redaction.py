"""A build runs the tenant's code, which may print what it finds: the log Slipway keeps (and
serves by link) is redacted as it is written, not only the tail shown on GitHub."""

from __future__ import annotations

from dataclasses import replace

from app.feedback.reports import REDACTED
from app.kernel.models import RevisionState
from builders.index_proxy import credentials_of
from manifests.langgraph_image import PipIndex
from tests.unit.world import Platform

INDEX_PASSWORD = "idx-0123456789abcdef"  # the operator's package index credential
USER_SECRET = "sk-live-0123456789abcdef"


def test_the_stored_build_log_holds_no_secret_the_platform_knows(platform: Platform) -> None:
    index = PipIndex(index_url=f"https://operator:{INDEX_PASSWORD}@mirror.example/simple/")
    platform.pipeline.config = replace(
        platform.pipeline.config, platform_secrets=tuple(credentials_of(index))
    )
    platform.push()
    platform.set_env({"API_KEY": USER_SECRET})
    platform.builder.output = [
        f"#4 0.3 API_KEY={USER_SECRET}",
        f"#5 0.2 index-url = {index.index_url}",
        f"#6 0.1 {INDEX_PASSWORD}",
    ]
    revision_id = platform.push()

    assert platform.pipeline.run(revision_id) is RevisionState.live

    log = platform.pipeline.config.log_path(platform.revision(revision_id)).read_text()
    assert "#4 0.3 API_KEY=" in log and REDACTED in log
    assert USER_SECRET not in log
    assert INDEX_PASSWORD not in log
