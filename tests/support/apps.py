"""Source trees of the small apps the tests deploy."""

from __future__ import annotations

import json

from tests.support.images import BUSYBOX_IMAGE, PYTHON_IMAGE

NOTES_APP = r'''
"""A tiny app: says which version it is and keeps notes in its deployment's database."""
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import psycopg2

VERSION = open("/app/VERSION").read().strip()
COMMIT = os.environ.get("SLIPWAY_COMMIT", "")


def db():
    return psycopg2.connect(os.environ["DATABASE_URI"], connect_timeout=5)


with db() as conn, conn.cursor() as cur:
    cur.execute("CREATE TABLE IF NOT EXISTS notes (id serial PRIMARY KEY, text text NOT NULL)")


class Handler(BaseHTTPRequestHandler):
    def _send(self, status, body):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        path = urlsplit(self.path).path
        if path == "/":
            self._send(200, f"version={VERSION} commit={COMMIT}\n")
        elif path.startswith("/env/"):
            value = os.environ.get(path.removeprefix("/env/"))
            self._send(404, "unset\n") if value is None else self._send(200, value)
        elif path == "/notes":
            with db() as conn, conn.cursor() as cur:
                cur.execute("SELECT text FROM notes ORDER BY id")
                self._send(200, json.dumps([row[0] for row in cur.fetchall()]))
        else:
            self._send(404, "not found\n")

    def do_POST(self):
        query = parse_qs(urlsplit(self.path).query)
        with db() as conn, conn.cursor() as cur:
            cur.execute("INSERT INTO notes (text) VALUES (%s)", (query["text"][0],))
        self._send(201, "stored\n")

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
'''

NOTES_DOCKERFILE = f"""FROM {PYTHON_IMAGE}
WORKDIR /app
COPY VERSION app.py /app/
CMD ["python3", "-u", "/app/app.py"]
"""


def notes_app(version: str) -> dict[str, str | bytes]:
    return {"Dockerfile": NOTES_DOCKERFILE, "app.py": NOTES_APP, "VERSION": version + "\n"}


def static_site(
    text: str, *, extra_run: str = "", cmd: str | None = None
) -> dict[str, str | bytes]:
    """busybox httpd serving one page; extra_run and cmd let a test break it on purpose."""
    command = cmd or '["/bin/busybox", "httpd", "-f", "-p", "8000", "-h", "/www"]'
    return {
        "Dockerfile": (
            f"FROM {BUSYBOX_IMAGE}\nCOPY index.html /www/index.html\n{extra_run}CMD {command}\n"
        ),
        "index.html": text + "\n",
    }


LANGGRAPH_JSON = '{\n  "dependencies": ["."],\n  "graphs": {"agent": "./agent.py:graph"}\n}\n'
LANGGRAPH_AGENT = """import asyncio

from langgraph.graph import StateGraph
from typing_extensions import NotRequired, TypedDict


class State(TypedDict):
    text: str
    seconds: NotRequired[float]


async def answer(state: State) -> dict:
    await asyncio.sleep(state.get("seconds", 0))
    return {"text": PREFIX + state["text"]}


PREFIX = "{prefix}"
builder = StateGraph(State)
builder.add_node("answer", answer)
builder.set_entry_point("answer")
graph = builder.compile()
"""


def langgraph_app(prefix: str, *, dockerfile_lines: tuple[str, ...] = ()) -> dict[str, str | bytes]:
    """A LangGraph repository without a Dockerfile: its graph answers PREFIX + the input, after
    the input's `seconds` if it has any (a run that streams over time, or is cancelled running).

    dockerfile_lines: langgraph.json's own, placed before the pip installs of the image.
    """
    config = LANGGRAPH_JSON
    if dockerfile_lines:
        settings = {**json.loads(LANGGRAPH_JSON), "dockerfile_lines": list(dockerfile_lines)}
        config = json.dumps(settings, indent=2) + "\n"
    return {
        "langgraph.json": config,
        "agent.py": LANGGRAPH_AGENT.replace("{prefix}", prefix),
        "requirements.txt": "langgraph\n",
    }


SLOW_APP = r'''
"""Answers after ?ms= milliseconds with its version and which replica answered."""
import os
import socket
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

VERSION = open("/app/VERSION").read().strip()
REPLICA = socket.gethostname()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        query = parse_qs(urlsplit(self.path).query)
        time.sleep(int(query.get("ms", ["0"])[0]) / 1000)
        data = f"version={VERSION} replica={REPLICA}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256


Server(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
'''


def slow_app(version: str, scale: str = "") -> dict[str, str | bytes]:
    """A threaded app whose answers take ?ms= milliseconds: concurrency on demand.

    `scale` is a slipway.toml `[scale]` table's body, if any.
    """
    files: dict[str, str | bytes] = {
        "Dockerfile": NOTES_DOCKERFILE,
        "VERSION": f"{version}\n",
        "app.py": SLOW_APP,
    }
    if scale:
        files["slipway.toml"] = f"[scale]\n{scale}\n"
    return files
