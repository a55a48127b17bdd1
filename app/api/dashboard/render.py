"""HTML from the dashboard's templates (Mako, which Alembic already brings: no new package).

The template engine is imported and the templates compiled at the first page asked for, not
when the API starts: the combined process at rest (issue 22) carries none of it until someone
opens the dashboard. Every `${...}` is HTML-escaped (`default_filters=["h"]`): a commit
message or an env value shows as text, never as markup.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mako.lookup import TemplateLookup

TEMPLATES = Path(__file__).with_name("templates")
STATIC = Path(__file__).with_name("static")


class Pages:
    def __init__(self, directory: Path = TEMPLATES) -> None:
        self._directory = directory
        self._lookup: TemplateLookup | None = None
        self._lock = threading.Lock()

    def render(self, name: str, **context: Any) -> str:
        return str(self._templates().get_template(name).render(**context))

    def _templates(self) -> TemplateLookup:
        with self._lock:
            if self._lookup is None:
                from mako.lookup import TemplateLookup

                self._lookup = TemplateLookup(
                    directories=[str(self._directory)],
                    default_filters=["h"],
                    strict_undefined=True,
                    input_encoding="utf-8",
                )
            return self._lookup
