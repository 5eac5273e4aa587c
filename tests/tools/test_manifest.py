"""Manifests (tools/*.yaml): validation errors name file, key and reason; ${VAR} expansion."""

from __future__ import annotations

from pathlib import Path

import pytest

from penguiflow_agents.exceptions import ManifestError, MissingEnvVarError
from penguiflow_agents.tools import SourceManifest, ToolRegistry, expand_vars, load_manifest

GOOD = """\
name: time
transport: mcp_stdio
command: [python, -m, mcp_server_time]
env: {TZ: UTC}
include: ["get_.*", "convert_time"]
exclude: ["get_secret"]
tools:
  convert_time: {risk: low, idempotent: true, timeout_s: 3}
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def refused(path: Path) -> ManifestError:
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    return info.value


def test_design_example_loads_with_documented_defaults(tmp_path: Path) -> None:
    manifest = load_manifest(write(tmp_path, "time.yaml", GOOD))
    assert manifest.name == "time"
    assert manifest.path == str(tmp_path / "time.yaml")
    assert (manifest.timeout_s, manifest.queue_timeout_s, manifest.max_concurrency) == (10, 5, 4)
    assert manifest.retries.max_attempts == 3
    assert manifest.retries.initial_backoff_s == 0.2
    assert manifest.retries.max_backoff_s == 2.0
    assert manifest.idempotent is False
    assert manifest.tools["convert_time"].timeout_s == 3


def test_include_and_exclude_full_match_the_bare_name(tmp_path: Path) -> None:
    manifest = load_manifest(write(tmp_path, "time.yaml", GOOD))
    assert manifest.allows("get_current_time")
    assert manifest.allows("convert_time")
    assert not manifest.allows("get_secret"), "exclude applies after include"
    assert not manifest.allows("convert_time_now"), "include is a full match, not a prefix"
    assert not manifest.allows("xget_current_time")


def test_unknown_key_names_file_key_and_lists_allowed_keys(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yaml", GOOD + "timeout: 5\n")
    exc = refused(path)
    assert exc.file == str(path)
    assert exc.key == "timeout"
    assert "not a known key" in exc.reason and "timeout_s" in exc.reason
    assert str(path) in str(exc)


def test_unknown_key_inside_retries_is_refused_with_its_dotted_key(tmp_path: Path) -> None:
    exc = refused(write(tmp_path, "bad.yaml", GOOD + "retries: {max_atempts: 2}\n"))
    assert exc.key == "retries.max_atempts"


def test_wrong_type_names_the_key_and_the_value(tmp_path: Path) -> None:
    exc = refused(write(tmp_path, "bad.yaml", GOOD + "max_concurrency: lots\n"))
    assert exc.key == "max_concurrency"
    assert "integer" in exc.reason and "'lots'" in exc.reason


def test_bad_regex_names_the_list_entry_and_why(tmp_path: Path) -> None:
    text = GOOD.replace('include: ["get_.*", "convert_time"]', 'include: ["get_.*", "get_(["]')
    exc = refused(write(tmp_path, "bad.yaml", text))
    assert exc.key == "include.1"
    assert "'get_(['" in exc.reason and "regular expression" in exc.reason


@pytest.mark.parametrize(
    ("transport", "key"),
    [("mcp_stdio", "command"), ("mcp_http", "url"), ("http", "url"), ("python", "module")],
)
def test_each_transport_requires_its_own_field(tmp_path: Path, transport: str, key: str) -> None:
    exc = refused(write(tmp_path, "bad.yaml", f"name: s\ntransport: {transport}\n"))
    assert exc.key == key
    assert transport in exc.reason


def test_http_endpoint_fields_are_refused_for_other_transports(tmp_path: Path) -> None:
    text = "name: s\ntransport: python\nmodule: m\ntools: {t: {method: GET, path: /x}}\n"
    exc = refused(write(tmp_path, "bad.yaml", text))
    assert exc.key == "tools.t.method"


def test_http_tool_needs_method_and_path(tmp_path: Path) -> None:
    text = "name: s\ntransport: http\nurl: http://127.0.0.1:1\ntools: {t: {method: GET}}\n"
    assert refused(write(tmp_path, "bad.yaml", text)).key == "tools.t.path"


def test_yaml_syntax_error_and_non_mapping_are_refused(tmp_path: Path) -> None:
    exc = refused(write(tmp_path, "syntax.yaml", "name: [unclosed\n"))
    assert "not valid YAML" in exc.reason and "line" in exc.reason
    exc = refused(write(tmp_path, "list.yaml", "- a\n- b\n"))
    assert "mapping" in exc.reason


def test_a_secret_in_headers_is_not_echoed_in_a_type_error(tmp_path: Path) -> None:
    text = "name: s\ntransport: http\nurl: http://h\nheaders: {Authorization: [hunter2-secret]}\n"
    exc = refused(write(tmp_path, "bad.yaml", text))
    assert exc.key == "headers.Authorization"
    assert "hunter2-secret" not in str(exc)


def test_expand_vars_substitutes_and_names_a_missing_variable_and_file() -> None:
    assert expand_vars("Bearer ${TOK}", file="f.yaml", environ={"TOK": "abc"}) == "Bearer abc"
    with pytest.raises(MissingEnvVarError) as info:
        expand_vars("${A} ${MISSING}", file="tools/x.yaml", environ={"A": "value-of-a"})
    assert info.value.variable == "MISSING"
    assert info.value.file == "tools/x.yaml"
    assert "MISSING" in str(info.value) and "tools/x.yaml" in str(info.value)
    assert "value-of-a" not in str(info.value)


def test_manifest_resolves_env_headers_and_url_on_request(tmp_path: Path) -> None:
    text = (
        "name: s\ntransport: mcp_http\nurl: http://127.0.0.1:${PORT}/mcp\n"
        "headers: {Authorization: 'Bearer ${TOKEN}'}\n"
    )
    manifest = load_manifest(write(tmp_path, "s.yaml", text))
    assert manifest.url == "http://127.0.0.1:${PORT}/mcp", "not resolved at load time"
    environ = {"PORT": "8931", "TOKEN": "t0k"}
    assert manifest.resolved_url(environ) == "http://127.0.0.1:8931/mcp"
    assert manifest.resolved_headers(environ) == {"Authorization": "Bearer t0k"}
    with pytest.raises(MissingEnvVarError):
        manifest.resolved_headers({"PORT": "1"})


def test_from_dir_keeps_good_manifests_and_collects_each_bad_one(tmp_path: Path) -> None:
    write(
        tmp_path,
        "a_good.yaml",
        "name: good\ntransport: python\nmodule: penguiflow_agents.demo_tools\n",
    )
    write(tmp_path, "b_unknown.yaml", "name: b\ntransport: python\nmodule: m\ncolour: red\n")
    write(tmp_path, "c_type.yaml", "name: c\ntransport: python\nmodule: m\ntimeout_s: soon\n")
    write(tmp_path, "d_regex.yaml", "name: d\ntransport: python\nmodule: m\nexclude: ['(']\n")
    write(tmp_path, "e_dup.yaml", "name: good\ntransport: python\nmodule: m\n")
    registry = ToolRegistry.from_dir(tmp_path)
    assert registry.sources == ["good"]
    got = {(Path(e.file).name, e.key) for e in registry.load_errors}
    assert got == {
        ("b_unknown.yaml", "colour"),
        ("c_type.yaml", "timeout_s"),
        ("d_regex.yaml", "exclude.0"),
        ("e_dup.yaml", "name"),
    }
    assert all(e.reason for e in registry.load_errors)
    assert len(registry.manifest_files) == 5


def test_from_dir_refuses_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="not a directory"):
        ToolRegistry.from_dir(tmp_path / "nope")


async def test_missing_env_var_at_connect_marks_only_that_source_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PF_TEST_MISSING_TOKEN", raising=False)
    write(
        tmp_path,
        "api.yaml",
        "name: api\ntransport: http\nurl: http://127.0.0.1:9\n"
        "headers: {Authorization: 'Bearer ${PF_TEST_MISSING_TOKEN}'}\n"
        "tools: {ping: {method: GET, path: /ping}}\n",
    )
    write(
        tmp_path,
        "clock.yaml",
        "name: clock\ntransport: python\nmodule: penguiflow_agents.demo_tools\n",
    )
    async with ToolRegistry.from_dir(tmp_path) as registry:
        names = [spec.name for spec in await registry.list_tools()]
        assert "clock.add_minutes" in names
        assert not any(n.startswith("api.") for n in names)
        status = {s.name: s for s in registry.status()}
        assert status["api"].up is False
        assert "PF_TEST_MISSING_TOKEN" in (status["api"].reason or "")
        assert "api.yaml" in (status["api"].reason or "")
        assert status["clock"].up is True


def test_source_manifest_is_constructible_in_code() -> None:
    manifest = SourceManifest(
        name="local", transport="python", module="my.tools", max_concurrency=2
    )
    assert manifest.max_concurrency == 2 and manifest.allows("anything")


def test_a_key_written_twice_in_a_manifest_is_refused_with_its_line(tmp_path: Path) -> None:
    """YAML silently keeps the last of two equal keys; a manifest refuses it instead."""
    path = tmp_path / "twice.yaml"
    path.write_text("name: a\ntransport: python\nmodule: m\nexclude: [x]\nexclude: []\n")
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    message = str(caught.value)
    assert str(path) in message and "'exclude' appears twice" in message and "line 5" in message
