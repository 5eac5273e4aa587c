"""`keys add | revoke | list`: the key is printed once, alone on the first line; only its hash
is stored; a revoked key is refused by the key ring."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from penguiflow_agents.cli import main
from penguiflow_agents.server import KeyRing, hash_key


def test_keys_add_prints_a_fresh_key_first_and_stores_only_its_hash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = tmp_path / "keys.yaml"
    code = main(
        [
            "keys",
            "add",
            "--tenant",
            "acme",
            "--principal",
            "bob",
            "--role",
            "admin",
            "--keys",
            str(keys),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out.splitlines()
    key = out[0]
    assert key.startswith("pfa_") and len(key) >= 4 + 22  # >= 128 bits of base64url
    text = keys.read_text()
    assert key not in text
    (entry,) = yaml.safe_load(text)["keys"]
    assert entry["sha256"] == hash_key(key)
    assert entry["tenant"] == "acme" and entry["principal"] == "bob" and entry["roles"] == ["admin"]
    assert oct(keys.stat().st_mode & 0o777) == "0o600"
    found = KeyRing.load(keys).authenticate(key)
    assert found is not None and found.id == "acme-bob"


def test_two_keys_get_distinct_ids_and_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = str(tmp_path / "keys.yaml")
    for _ in range(2):
        assert main(["keys", "add", "--tenant", "acme", "--principal", "bob", "--keys", keys]) == 0
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("pfa_")]
    ring = KeyRing.load(keys)
    assert [k.id for k in ring.keys] == ["acme-bob", "acme-bob-2"]
    assert len(set(printed)) == 2
    assert [ring.authenticate(k).id for k in printed] == ["acme-bob", "acme-bob-2"]  # type: ignore[union-attr]


def test_a_revoked_key_is_refused_and_a_running_ring_notices(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = tmp_path / "keys.yaml"
    assert main(["keys", "add", "--tenant", "acme", "--principal", "bob", "--keys", str(keys)]) == 0
    key = capsys.readouterr().out.splitlines()[0]
    ring = KeyRing.load(keys)
    assert ring.authenticate(key) is not None
    assert main(["keys", "revoke", "acme-bob", "--keys", str(keys)]) == 0
    ring.refresh()
    assert ring.authenticate(key) is None
    assert main(["keys", "list", "--keys", str(keys)]) == 0
    assert "(revoked)" in capsys.readouterr().out


def test_act_for_users_keys_record_their_grantable_roles(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = tmp_path / "keys.yaml"
    argv = ["keys", "add", "--tenant", "acme", "--principal", "chat", "--keys", str(keys)]
    argv += ["--act-for-users", "--grantable-role", "viewer", "--id", "acme-chat"]
    assert main(argv) == 0
    (entry,) = KeyRing.load(keys).keys
    assert entry.act_for_users and entry.grantable_roles == ("viewer",)


def test_bad_input_is_a_usage_error_naming_the_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = tmp_path / "keys.yaml"
    assert main(["keys", "revoke", "nope", "--keys", str(keys)]) == 2
    assert "no key with id 'nope'" in capsys.readouterr().err
    keys.write_text("keys:\n  - id: x\n    sha256: short\n    tenant: a\n    principal: b\n")
    assert main(["keys", "add", "--tenant", "a", "--principal", "b", "--keys", str(keys)]) == 2
    err = capsys.readouterr().err
    assert "keys.0.sha256" in err and str(keys) in err


class _ReaderGoneAfter:
    """A stdout whose reader reads ``lines`` lines and then closes the pipe (`... | head -1`)."""

    def __init__(self, lines: int) -> None:
        self.lines = lines
        self.text = ""

    def write(self, text: str) -> int:
        if self.text.count("\n") >= self.lines:
            raise BrokenPipeError(32, "Broken pipe")
        self.text += text
        return len(text)

    def flush(self) -> None:
        if self.text.count("\n") > self.lines:
            raise BrokenPipeError(32, "Broken pipe")


def _add(keys: Path, principal: str) -> int:
    return main(["keys", "add", "--tenant", "acme", "--principal", principal, "--keys", str(keys)])


def test_keys_add_piped_to_head_succeeds_once_the_key_line_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = tmp_path / "keys.yaml"
    out = _ReaderGoneAfter(lines=1)
    monkeypatch.setattr("sys.stdout", out)
    assert _add(keys, "alice") == 0
    assert "Traceback" not in capsys.readouterr().err
    key = out.text.splitlines()[0]
    found = KeyRing.load(keys).authenticate(key)
    assert found is not None and found.principal == "alice"


def test_keys_add_with_a_closed_stdout_says_the_key_was_lost_and_how_to_revoke_it(
    tmp_path: Path,
) -> None:
    keys = tmp_path / "keys.yaml"
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody will ever read the key
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "penguiflow_agents",
                "keys",
                "add",
                "--keys",
                str(keys),
                "--tenant",
                "acme",
                "--principal",
                "bob",
            ],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "could not be written to stdout" in done.stderr
    assert "keys revoke acme-bob" in done.stderr


def test_any_command_whose_stdout_reader_went_away_exits_quietly_like_sigpipe(
    tmp_path: Path,
) -> None:
    keys = tmp_path / "keys.yaml"
    assert main(["keys", "add", "--tenant", "acme", "--principal", "bob", "--keys", str(keys)]) == 0
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "penguiflow_agents", "keys", "list", "--keys", str(keys)],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert done.returncode == 141
    assert done.stderr == ""
