"""Every BuildKit cache mount of a tenant's Dockerfile lands under the repository's scope."""

from __future__ import annotations

import pytest

from builders.cache_mounts import CacheMountRefused, namespace_cache_mounts

SCOPE = "slipway-42"


def test_a_cache_mount_without_an_id_gets_its_target_under_the_scope() -> None:
    dockerfile = "FROM python\nRUN --mount=type=cache,target=/root/.cache/pip pip install x\n"
    assert namespace_cache_mounts(dockerfile, SCOPE) == (
        "FROM python\n"
        "RUN --mount=type=cache,target=/root/.cache/pip,id=slipway-42/root/.cache/pip "
        "pip install x\n"
    )


def test_an_id_is_prefixed_and_a_second_id_cannot_hide_from_it() -> None:
    dockerfile = "FROM x\nrun --mount=type=cache,id=shared,target=/c,ID=victim ls /c\n"
    out = namespace_cache_mounts(dockerfile, SCOPE)
    assert out == "FROM x\nrun --mount=type=cache,target=/c,id=slipway-42/victim ls /c\n"


def test_continuation_lines_and_comments_inside_are_joined_and_lines_kept() -> None:
    dockerfile = (
        "FROM x\n"
        "RUN --mount=type=bind,source=a,target=/a \\\n"
        "# a comment inside\n"
        "    --mount=type=cache,target=/var/cache/apt,sharing=locked \\\n"
        "    apt-get update\n"
        "COPY . /app\n"
    )
    out = namespace_cache_mounts(dockerfile, SCOPE).split("\n")
    assert out[1] == (
        "RUN --mount=type=bind,source=a,target=/a "
        "--mount=type=cache,target=/var/cache/apt,sharing=locked,"
        "id=slipway-42/var/cache/apt apt-get update"
    )
    assert out[2:5] == ["", "", ""]
    assert out[5] == "COPY . /app"  # still on line 6


def test_the_json_form_quoted_flags_and_onbuild_are_scoped_too() -> None:
    dockerfile = (
        "# escape=`\n"
        "FROM x\n"
        "RUN --mount=type=cache,id=pip,target=/p `\n"
        '  ["pip", "install", "y"]\n'
        "ONBUILD RUN --mount=type=cache,target=/o true\n"
    )
    out = namespace_cache_mounts(dockerfile, SCOPE).split("\n")
    assert out[2] == 'RUN --mount=type=cache,target=/p,id=slipway-42/pip ["pip", "install", "y"]'
    assert out[4] == "ONBUILD RUN --mount=type=cache,target=/o,id=slipway-42/o true"


def test_other_mounts_and_heredoc_bodies_are_left_alone() -> None:
    dockerfile = (
        "# syntax=docker/dockerfile:1.4\n"
        "FROM x\n"
        "RUN --mount=type=secret,id=npm cat /run/secrets/npm\n"
        "RUN <<EOF\n"
        "RUN --mount=type=cache,target=/not-an-instruction\n"
        "EOF\n"
    )
    assert namespace_cache_mounts(dockerfile, SCOPE) == dockerfile


@pytest.mark.parametrize(
    "dockerfile",
    [
        "# syntax=evil/frontend:1\nFROM x\n",
        'FROM x\nRUN --mount="type=cache,target=/a,""id=x""" ls\n',
        "FROM x\nRUN --mount=type=$KIND,target=/a ls\n",
        "FROM x\nRUN --mount=type=cache,target=/a,id=a\\,b ls\n",
        "FROM x\nRUN --mount=type=cache,id=a ls\n",
        "FROM x\nRUN --mount=type=cache,target=/a,weird=1 ls\n",
    ],
)
def test_what_could_reach_another_cache_is_refused(dockerfile: str) -> None:
    with pytest.raises(CacheMountRefused):
        namespace_cache_mounts(dockerfile, SCOPE)
