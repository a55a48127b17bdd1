"""The ASGI entry point of every LangGraph image Slipway generates: langgraph-api's own app, with
one fix for the pg runtime. This file is copied into the image as it is (see
langgraph_image.ENTRY_MODULE) and runs there, never in Slipway: it imports nothing of Slipway.

The fix. langgraph-api 0.11.1 (the only version langgraph-runtime-pg 0.11.1.post1 accepts)
puts the run's user object, a starlette `BaseUser` (`SimpleUser` for a cron, the custom auth's
user otherwise), into the run's `config.configurable.langgraph_auth_user`, and leaves its
serialisation to "the encryption middleware if needed" (models/run.py). The pg runtime stores
that config in a JSONB column through SQLAlchemy, whose default serialiser is `json.dumps`:
the INSERT fails with "Object of type SimpleUser is not JSON serializable", so every scheduled
run of a cron fails in the server and no cron ever fires. The inmem runtime keeps the object
in memory and is not affected.

The pg runtime's engine is therefore made with a JSON serialiser that writes a user object as
the dict langgraph-api itself writes when encryption is on (`model_dump()`, or identity,
is_authenticated and display_name); the worker reads it back with `normalize_user`, as it does
an encrypted run's. Every other value is serialised exactly as before, and whatever `json.dumps`
refused and is not a user is still refused.
"""

from __future__ import annotations

import functools
import importlib
import json
from typing import Any

app = importlib.import_module("langgraph_api.server").app
"""What uvicorn serves: langgraph-api's own app, imported first as `langgraph_api.server:app`
would be, so the runtime is loaded as langgraph-api loads it."""
PATCHED_MARK = "_slipway_json_serializer"


def user_as_json(value: Any) -> Any:
    """`default` of json.dumps: a user object as a dict, anything else refused as before."""
    dump = getattr(value, "model_dump", None)
    if callable(dump) and not isinstance(value, type):
        return dump()
    if hasattr(value, "identity") and hasattr(value, "is_authenticated"):
        return {
            "identity": value.identity,
            "is_authenticated": value.is_authenticated,
            "display_name": getattr(value, "display_name", value.identity),
        }
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def dumps(value: Any) -> str:
    return json.dumps(value, default=user_as_json)


def patch_pg_runtime() -> bool:
    """Give the pg runtime's engine `dumps` as its JSON serialiser; False where the pg runtime
    is not installed (an inmem image) or was already patched."""
    try:
        database = importlib.import_module("langgraph_runtime_pg.database")
    except ImportError:
        return False
    create = getattr(database, "create_async_engine")  # noqa: B009 - a module of the image
    if getattr(create, PATCHED_MARK, False):
        return False
    patched = functools.partial(create, json_serializer=dumps)
    setattr(patched, PATCHED_MARK, True)
    setattr(database, "create_async_engine", patched)  # noqa: B010
    return True


patch_pg_runtime()
