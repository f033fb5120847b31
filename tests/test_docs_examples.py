"""The user guides in ``docs/`` and the README run as written, and point nowhere outside the repo.

Every ```python block of ``docs/*.md`` and ``README.md`` runs in a fresh directory,
in a process of its own, and must exit 0. A ```text block right after a block that runs is that
block's output: what it prints must match it (``...`` stands for any text, for
ids and timestamps). An HTML comment on the line before a block, invisible when
the page is rendered, says how to run it:

* none: offline, nothing running (``python`` blocks only);
* ``<!-- run: aws -->``: with a local AWS endpoint (a moto server this test starts,
  fake credentials, ``AWS_ENDPOINT_URL``), after the ``<!-- run: aws setup -->``
  shell blocks ran against it as a reader would run them (their
  ``export NAME=VALUE`` lines on stderr are exported, as the reader is told to);
* ``<!-- run: stack -->``: with a local runtime (redis-server, a ``celery worker``
  on the built-in agents with SQLite memory, the HTTP gateway with a token) and the
  variables ``source .fence/stack/env`` sets (``FENCE_*``, ``FENCE_GATEWAY_URL``,
  ``PATH``); ``bash`` blocks run too, with ``set -euo pipefail``;
* ``<!-- not run: why -->``: shown only.

Other blocks (``bash``, ``text``, ``console``) run only when marked.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from producer.stack.launch import (
    WORKER_READY,
    gateway_missing,
    launch_gateway,
    launch_worker,
    ready,
    start_redis,
)
from producer.stack.processes import free_port
from tests.memory import aws_server
from tests.support import MemoryEndpoint

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
PAGES = [REPO / "README.md", *sorted(DOCS.glob("*.md"))]
FENCE = re.compile(r"^```(\S*)\s*$")
MARKER = re.compile(r"^<!--\s*(run|not run):\s*(.*?)\s*-->$")
RUN_KINDS = {"aws", "aws setup", "stack"}
RUNNABLE = {"python": [sys.executable, "-"], "bash": ["bash", "-euo", "pipefail", "-s"]}
TIMEOUT_S = 120
STACK_TOKEN = "docs-example-token"


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    language: str
    code: str
    marker: tuple[str, str] | None
    output: str | None
    """The ```text block that follows, if any: the expected output."""

    @property
    def run_kind(self) -> str | None:
        """How it runs: "offline", "aws", "aws setup", "stack", or None (not run)."""
        if self.marker is None:
            return "offline" if self.language == "python" else None
        verb, kind = self.marker
        return kind if verb == "run" else None

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def blocks_of(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown page, with their marker and output block."""
    lines = path.read_text().splitlines()
    found: list[tuple[int, str, str, tuple[str, str] | None, int]] = []
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        end = next(i for i in range(index + 1, len(lines)) if lines[i].startswith("```"))
        previous = next((lines[i] for i in range(index - 1, -1, -1) if lines[i].strip()), "")
        marked = MARKER.match(previous.strip())
        marker = (marked.group(1), marked.group(2)) if marked else None
        code = "\n".join(lines[index + 1 : end]) + "\n"
        found.append((index + 1, opening.group(1), code, marker, end))
        index = end + 1
    blocks = []
    for position, (line, language, code, marker, end) in enumerate(found):
        output = None
        if position + 1 < len(found):
            next_line, next_language, next_code, _, _ = found[position + 1]
            between = lines[end + 1 : next_line - 1]
            if next_language == "text" and not any(text.strip() for text in between):
                output = next_code
        blocks.append(Block(path.name, line, language, code, marker, output))
    return blocks


BLOCKS = [block for page in PAGES for block in blocks_of(page)]
RUN = [block for block in BLOCKS if block.run_kind not in (None, "aws setup")]


def matches(expected: str, printed: str) -> bool:
    """``printed`` is ``expected``, where ``...`` in ``expected`` stands for any text."""
    pattern = ".*?".join(re.escape(part) for part in expected.strip().split("..."))
    return re.fullmatch(pattern, printed.strip(), flags=re.DOTALL) is not None


def clean_environ() -> dict[str, str]:
    """This environment without any FENCE_* or AWS_* of the developer's shell."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("FENCE_", "AWS_"))}


def with_repo(env: dict[str, str]) -> dict[str, str]:
    """``fence`` importable and this interpreter first on ``PATH``, as in the stack's env."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return {**env, "PYTHONPATH": str(REPO), "PATH": path}


def run(block: Block, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        RUNNABLE[block.language],
        input=block.code,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )


# -- what the blocks run against ------------------------------------------------------


@pytest.fixture(scope="module")
def aws_env(tmp_path_factory) -> Iterator[dict[str, str]]:
    """A moto server of its own (a process: moto's state is per process, and the memory
    tests' server in this one holds their sessions), set up by the docs' own commands."""
    endpoint = MemoryEndpoint(tmp_path_factory.mktemp("aws"))
    try:
        url = endpoint.url
        env = with_repo({**aws_server.dummy_aws_environ(clean_environ()), "AWS_ENDPOINT_URL": url})
        directory = tmp_path_factory.mktemp("aws-setup")
        for block in (b for b in BLOCKS if b.run_kind == "aws setup"):
            done = run(block, env, directory)
            assert done.returncode == 0, f"{block.id}\n{done.stderr}"
            env.update(re.findall(r"^export (\w+)=(\S+)$", done.stderr, flags=re.MULTILINE))
        yield env
    finally:
        endpoint.stop()


@pytest.fixture(scope="module")
def stack_env(tmp_path_factory) -> Iterator[dict[str, str]]:
    """redis-server, a worker and the gateway, and the env a stack's env file gives."""
    missing = gateway_missing()
    if missing:
        pytest.skip(f"the HTTP gateway cannot start: {missing}")
    directory = tmp_path_factory.mktemp("docs-stack")
    redis_process, redis_url = start_redis(directory / "redis")
    port = free_port()
    env = with_repo(
        {
            **clean_environ(),
            "FENCE_REDIS_URL": redis_url,
            "FENCE_MEMORY": f"sqlite:///{directory / 'memory.db'}",
            "FENCE_API_TOKENS": STACK_TOKEN,
            "FENCE_GATEWAY_URL": f"http://127.0.0.1:{port}",
        }
    )
    processes = [redis_process]
    try:
        output = {"cwd": REPO, "log_path": directory / "worker.log"}
        processes.append(launch_worker("docs", env, concurrency=2, **output))
        output["log_path"] = directory / "gateway.log"
        processes.append(launch_gateway(env, port, **output))
        ready(processes[1], WORKER_READY)
        ready(processes[2], r"Uvicorn running on")
        yield env
    finally:
        for process in reversed(processes):
            process.stop()


# -- the tests --------------------------------------------------------------------------


def test_the_guides_have_examples_that_run():
    assert {"memory.md", "runtime.md", "http-api.md"} <= {page.name for page in PAGES}
    for page in ("memory.md", "runtime.md", "http-api.md"):
        assert [b for b in RUN if b.page == page], f"docs/{page} has no example that runs"
    assert len(RUN) >= 20, "fewer examples found than the guides hold: is the parser broken?"


def test_every_marker_says_how_to_run_or_why_not():
    for block in (b for b in BLOCKS if b.marker is not None):
        verb, kind = block.marker
        if verb == "run":
            assert kind in RUN_KINDS, f"{block.id}: unknown way to run: {kind!r}"
            assert block.language in RUNNABLE, f"{block.id}: only python and bash blocks run"
        else:
            assert kind, f"{block.id}: say why it does not run"


@pytest.mark.parametrize("block", RUN, ids=[b.id for b in RUN])
def test_example_runs_as_written(block, request, tmp_path):
    env = with_repo(clean_environ())
    if block.run_kind == "aws":
        env = request.getfixturevalue("aws_env")
    elif block.run_kind == "stack":
        env = request.getfixturevalue("stack_env")

    done = run(block, env, tmp_path)

    assert done.returncode == 0, f"{block.id} failed:\n{done.stderr}"
    if block.output is not None:
        assert matches(block.output, done.stdout), (
            f"{block.id} printed:\n{done.stdout}\nthe page shows:\n{block.output}"
        )


TEXT_SUFFIXES = {".md", ".py", ".toml", ".yml", ".yaml", ".json", ".cfg", ".txt", ".example"}


def shipped_text_files() -> Iterator[Path]:
    """The repository's text files, without virtualenvs, caches and build output."""
    for root, directories, files in os.walk(REPO):
        directories[:] = [
            d
            for d in directories
            if not d.startswith(".") and d not in {"venv", "__pycache__"} and "egg-info" not in d
        ]
        for name in files:
            path = Path(root, name)
            if path.suffix in TEXT_SUFFIXES or name in {"Makefile", "Dockerfile"}:
                yield path


def test_nothing_shipped_points_outside_the_repository():
    outside = "../" + "shared/"  # written so that this file does not contain it
    offenders = [
        str(path.relative_to(REPO)) for path in shipped_text_files() if outside in path.read_text()
    ]
    assert offenders == []


LINK = re.compile(r"\]\(([^)\s]+)\)")


def prose(page: Path) -> str:
    """A Markdown page without its fenced blocks."""
    return re.sub(r"^```.*?^```", "", page.read_text(), flags=re.MULTILINE | re.DOTALL)


def anchors(page: Path) -> set[str]:
    """The ids GitHub gives the page's headings."""
    headings = re.findall(r"^#+\s+(.*?)\s*$", prose(page), flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve_inside_the_repository(page):
    for link in LINK.findall(prose(page)):
        if re.match(r"^[a-z]+:", link):
            continue
        target, _, anchor = link.partition("#")
        resolved = (page.parent / target).resolve() if target else page
        assert resolved.is_relative_to(REPO), f"{page.name} links outside the repo: {link}"
        assert resolved.exists(), f"{page.name} links to a missing file: {link}"
        if anchor and resolved.suffix == ".md":
            assert anchor in anchors(resolved), f"{page.name} links to a missing heading: {link}"
