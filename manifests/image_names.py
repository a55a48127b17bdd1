"""Names of the images Slipway builds for revisions.

The engine's BuildKit resolves `FROM`, `COPY --from` and `RUN --mount=from=` against the
engine's own images, registry or not: a tenant's Dockerfile that names another deployment's
image reads its files. Deployment and revision ids are not secrets (they appear in links on
pull requests), so each revision's image carries random bits in its tag as well: a name no
tenant can guess, recorded on the revision (rollbacks and the reconciler use the record), and
found by its labels when the record is missing (teardown, recovery).
"""

from __future__ import annotations

import secrets

IMAGE_REPOSITORY = "slipway"
UNGUESSABLE_BYTES = 10
"""80 random bits per image: beyond guessing, through any number of builds."""


def revision_image_tag(deployment_id: str, revision_id: str) -> str:
    """`slipway/<deployment>:<revision>-<random>`: readable in `docker images`, guessable by
    no one. A new one per build (a retried build makes a new image)."""
    token = secrets.token_hex(UNGUESSABLE_BYTES)
    return f"{IMAGE_REPOSITORY}/{deployment_id}:{revision_id}-{token}"
