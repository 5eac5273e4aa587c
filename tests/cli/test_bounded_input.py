"""Hostile configuration files are refused one by one, cheaply, with short errors.

Before: a ~500-byte "billion laughs" YAML file took more than a gigabyte and
printed a 312 MB error; a manifest that is not UTF-8 or holds 100,000 nested
``[`` killed ``tools list`` with a traceback (exit 1); policies the same.
"""

from __future__ import annotations

import resource
import shutil
from pathlib import Path

import pytest

from penguiflow_agents.cli import main

REPO = Path(__file__).resolve().parents[2]
# Most an error line may be for these files (a few hundred characters of quoted value).
MAX_ERROR_CHARS = 1_000
# Growth of this process's peak memory that would mean a file was expanded.
MAX_GROWTH_KB = 200_000


def laughs(first_line: str) -> str:
    """A ~400-byte file that expands to about 10^9 values through nested aliases."""
    lines = [first_line, 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [{','.join(['*' + prev] * 10)}]")
    return "\n".join(lines) + "\n"


HOSTILE: dict[str, bytes] = {
    "laughs": laughs("name: laughs").encode(),
    "deep": b"name: deep\ntools: " + b"[" * 100_000 + b"\n",
    "latin1": "name: caf\u00e9\ntransport: python\nmodule: x\n".encode("latin-1"),
    "huge_value": b"name: " + b"x" * 500_000 + b"\ntransport: python\nmodule: m\n",
}


@pytest.fixture
def tools_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "tools"
    directory.mkdir()
    shutil.copy(REPO / "tools" / "clock.yaml", directory / "clock.yaml")
    for name, data in HOSTILE.items():
        (directory / f"{name}.yaml").write_bytes(data)
    return directory


def peak_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def test_tools_list_refuses_each_hostile_manifest_and_lists_the_good_one(
    tools_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = peak_kb()
    code = main(["tools", "list", "--tools", str(tools_dir), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "clock.add_minutes" in out
    refused = [line for line in err.splitlines() if line.startswith("error: manifest refused")]
    assert len(refused) == len(HOSTILE), err
    for line in refused:
        assert len(line) < MAX_ERROR_CHARS, line[:300]
    assert "Traceback" not in err
    by_file = {name: next(line for line in refused if f"{name}.yaml" in line) for name in HOSTILE}
    assert "anchors and aliases" in by_file["laughs"]
    assert "levels deep" in by_file["deep"]
    assert "not UTF-8" in by_file["latin1"]
    assert "more characters not shown" in by_file["huge_value"]
    assert peak_kb() - before < MAX_GROWTH_KB


@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_hostile_policy_file_is_a_configuration_error_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    data = HOSTILE[name].replace(b"name:", b"tenant:", 1)
    (policies / "acme.yaml").write_bytes(data)
    (tmp_path / "tools").mkdir()
    before = peak_kb()
    code = main(
        [
            "tools",
            "list",
            "--tenant",
            "acme",
            "--tools",
            str(tmp_path / "tools"),
            "--policies",
            str(policies),
        ]
    )
    _, err = capsys.readouterr()
    assert code == 2, err
    assert "acme.yaml" in err and "Traceback" not in err
    assert len(err) < MAX_ERROR_CHARS, err[:300]
    assert peak_kb() - before < MAX_GROWTH_KB


def test_a_few_aliases_are_still_fine(tmp_path: Path) -> None:
    """The bound does not forbid anchors: policies may reuse a role with ``<<: *base``."""
    from penguiflow_agents.policy import PolicySet

    (tmp_path / "acme.yaml").write_text(
        "tenant: acme\nallow: ['files.*']\n"
        "roles:\n  viewer: &base {allow: ['files.read_*']}\n  auditor: {<<: *base, deny: ['x']}\n"
    )
    assert PolicySet.load_dir(tmp_path).tenants == frozenset({"acme"})
