"""slipway.toml and the build plan: sensible defaults, and mistakes reported in the user's terms."""

from __future__ import annotations

from pathlib import Path

import pytest

import manifests.config
from manifests.config import (
    SCALE_MAX_LABEL,
    SCALE_MIN_LABEL,
    SCALE_TARGET_LABEL,
    ScaleConfig,
    deploy_labels,
    load_repository_config,
    parse_repository_config,
    scale_config_of,
    scale_labels,
)
from manifests.errors import ConfigError
from manifests.recipes import plan_build


def repository(root: Path, files: dict[str, str]) -> Path:
    for name, content in files.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    return root


def config_error(root: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        plan_build(root, load_repository_config(root))
    return str(caught.value)


def test_without_slipway_toml_the_root_dockerfile_is_built_and_port_8000_served(
    tmp_path: Path,
) -> None:
    root = repository(tmp_path, {"Dockerfile": "FROM scratch\n"})

    config = load_repository_config(root)
    plan = plan_build(root, config)

    assert (config.deploy.port, config.deploy.health_path) == (8000, "/")
    assert plan.recipe == "dockerfile"
    assert plan.dockerfile == root / "Dockerfile"
    assert plan.context_dir == root / "."
    assert plan.dockerfile_path == "Dockerfile"


def test_a_custom_dockerfile_context_port_and_health_path_are_used(tmp_path: Path) -> None:
    root = repository(
        tmp_path,
        {
            "slipway.toml": (
                "[build]\n"
                'dockerfile = "deploy/api.Dockerfile"\n'
                'context = "services/api"\n'
                "\n"
                "[deploy]\n"
                "port = 3000\n"
                'health_path = "/healthz"\n'
            ),
            "deploy/api.Dockerfile": "FROM scratch\n",
            "services/api/main.py": "print('api')\n",
        },
    )

    config = load_repository_config(root)
    plan = plan_build(root, config)

    assert (config.deploy.port, config.deploy.health_path) == (3000, "/healthz")
    assert plan.dockerfile == root / "deploy" / "api.Dockerfile"
    assert plan.context_dir == root / "services" / "api"
    assert plan.dockerfile_path == "deploy/api.Dockerfile"


def test_a_partial_slipway_toml_keeps_the_other_defaults(tmp_path: Path) -> None:
    root = repository(tmp_path, {"slipway.toml": "[deploy]\nport = 9000\n", "Dockerfile": ""})

    config = load_repository_config(root)

    assert config.deploy.port == 9000
    assert config.build.dockerfile == "Dockerfile"
    assert plan_build(root, config).dockerfile == root / "Dockerfile"


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        ('[build]\ndockerfle = "Dockerfile"\n', "build.dockerfle"),
        ("[deploy]\nports = 8080\n", "deploy.ports"),
        ("[runtime]\nreplicas = 3\n", "runtime"),
    ],
)
def test_an_unknown_key_is_an_error_naming_it(tmp_path: Path, toml: str, named: str) -> None:
    root = repository(tmp_path, {"slipway.toml": toml, "Dockerfile": ""})
    message = config_error(root)
    assert "slipway.toml" in message
    assert named in message


def test_invalid_toml_is_an_error(tmp_path: Path) -> None:
    root = repository(tmp_path, {"slipway.toml": "[deploy\nport = 80\n", "Dockerfile": ""})
    message = config_error(root)
    assert "slipway.toml is not valid TOML" in message


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        ('[build]\ndockerfile = "../x"\n', "build.dockerfile"),
        ('[build]\ndockerfile = "/etc/passwd"\n', "build.dockerfile"),
        ('[build]\ncontext = "app/../../.."\n', "build.context"),
        ("[deploy]\nport = 70000\n", "deploy.port"),
        ('[deploy]\nport = "http"\n', "deploy.port"),
        ('[deploy]\nhealth_path = "healthz"\n', "deploy.health_path"),
        ('[deploy]\nhealth_path = "/health check"\n', "deploy.health_path"),
        ("[scale]\nmin = 0\n", "scale.min"),
        ("[scale]\nmax = -1\n", "scale.max"),
        ('[scale]\nmax = "4"\n', "scale.max"),
        ("[scale]\nmin = 1.5\n", "scale.min"),
        ("[scale]\ntarget = 0\n", "scale.target"),
        ("[scale]\ntarget = inf\n", "scale.target"),
        ("[scale]\nreplicas = 3\n", "scale.replicas"),
    ],
)
def test_a_bad_value_is_an_error_naming_the_key(tmp_path: Path, toml: str, named: str) -> None:
    root = repository(tmp_path, {"slipway.toml": toml, "Dockerfile": ""})
    message = config_error(root)
    assert message.startswith("slipway.toml is invalid")
    assert named in message


def test_a_path_leaving_the_repository_says_it_must_stay_inside(tmp_path: Path) -> None:
    root = repository(tmp_path, {"slipway.toml": '[build]\ndockerfile = "../x"\n'})
    assert "inside the repository" in config_error(root)


def test_without_a_dockerfile_the_user_is_told_to_add_one_or_point_at_it(tmp_path: Path) -> None:
    root = repository(tmp_path, {"README.md": "# app\n"})
    message = config_error(root)
    assert "no Dockerfile at 'Dockerfile'" in message
    assert "add a Dockerfile" in message
    assert "langgraph.json" in message
    assert "[build] dockerfile" in message


def test_a_configured_dockerfile_that_is_missing_is_named(tmp_path: Path) -> None:
    root = repository(
        tmp_path, {"slipway.toml": '[build]\ndockerfile = "docker/Dockerfile.prod"\n'}
    )
    assert "no Dockerfile at 'docker/Dockerfile.prod'" in config_error(root)


def test_a_dockerfile_path_naming_a_directory_is_not_a_dockerfile(tmp_path: Path) -> None:
    root = repository(tmp_path, {"Dockerfile/README.md": "not a Dockerfile\n"})
    assert "no Dockerfile at 'Dockerfile'" in config_error(root)


def test_a_build_context_that_is_not_a_directory_is_named(tmp_path: Path) -> None:
    root = repository(
        tmp_path, {"slipway.toml": '[build]\ncontext = "services/api"\n', "Dockerfile": ""}
    )
    message = config_error(root)
    assert "build context 'services/api'" in message
    assert "not a directory" in message


def test_without_a_scale_section_every_bound_is_the_platforms() -> None:
    scale = parse_repository_config("[deploy]\nport = 9000\n").scale

    assert (scale.min, scale.max, scale.target) == (None, None, None)


def test_a_scale_section_is_read() -> None:
    config = parse_repository_config("[scale]\nmin = 2\nmax = 6\ntarget = 20\n")

    assert config.scale == ScaleConfig(min=2, max=6, target=20.0)


def test_a_scale_min_above_its_max_says_which_is_which(tmp_path: Path) -> None:
    root = repository(tmp_path, {"slipway.toml": "[scale]\nmin = 5\nmax = 2\n", "Dockerfile": ""})

    message = config_error(root)

    assert message.startswith("slipway.toml is invalid: scale: min (5) is above max (2)")
    assert "fewest replicas" in message


def test_the_module_docstring_example_is_a_valid_config() -> None:
    doc = manifests.config.__doc__ or ""
    example = "\n".join(
        line.removeprefix("    ") for line in doc.splitlines() if line[:4] == "    "
    )

    config = parse_repository_config(example)

    assert config.scale == ScaleConfig(min=2, max=6, target=20.0)


@pytest.mark.parametrize(
    "scale",
    [ScaleConfig(min=2, max=6, target=12.5), ScaleConfig(max=3), ScaleConfig(target=0.5)],
)
def test_scale_survives_the_image_labels(scale: ScaleConfig) -> None:
    labels = {**deploy_labels(parse_repository_config("").deploy), **scale_labels(scale)}

    assert scale_config_of(labels) == scale


def test_an_image_built_without_scale_leaves_it_to_the_platform() -> None:
    assert scale_labels(ScaleConfig()) == {}
    assert scale_config_of(deploy_labels(parse_repository_config("").deploy)) is None


@pytest.mark.parametrize(
    "labels",
    [
        {SCALE_MIN_LABEL: "two"},
        {SCALE_MIN_LABEL: "0"},
        {SCALE_MIN_LABEL: "4", SCALE_MAX_LABEL: "2"},
        {SCALE_TARGET_LABEL: "nan"},
        {SCALE_MAX_LABEL: "2.5"},
    ],
)
def test_scale_labels_edited_into_nonsense_are_ignored(labels: dict[str, str]) -> None:
    assert scale_config_of(labels) is None


@pytest.mark.parametrize(
    "value",
    [
        ".langgraph/x,type=bind,source=/,target=/host/langgraph.json",
        "dir with space/langgraph.json",
        "a\\nRUN id/langgraph.json",
        "-rf/langgraph.json",
    ],
)
def test_a_path_of_unsafe_characters_is_refused_with_an_annotation_on_its_line(
    value: str,
) -> None:
    """A path from slipway.toml ends up in a Dockerfile, a mount or an env value: only clean
    relative paths of safe characters are taken, and GitHub shows why beside the line."""
    text = f'[deploy]\nport = 8000\n\n[build]\ncontext = "."\nlanggraph_config_path = "{value}"\n'

    with pytest.raises(ConfigError, match="langgraph_config_path") as raised:
        parse_repository_config(text)

    [annotation] = raised.value.annotations
    assert (annotation.path, annotation.start_line) == ("slipway.toml", 6)
    assert "letters, digits and ._-" in annotation.message


def test_a_clean_nested_path_is_taken() -> None:
    config = parse_repository_config(
        '[build]\nlanggraph_config_path = "agents/v2_x/langgraph.json"\n'
    )

    assert config.build.langgraph_config_path == "agents/v2_x/langgraph.json"
