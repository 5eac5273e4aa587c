"""Sealing credentials at rest: AES-256-GCM with one key per deployment.

The key comes from ``PENGUIFLOW_SECRET_KEY`` (the URL-safe base64 of 32 random
bytes, as ``SecretBox.generate_key()`` prints), or else from a key file
(default ``.penguiflow/secret.key``) that is created on first use with mode
0600. Each sealed value is bound to its record (tenant and key) as associated
data, so a value copied to another tenant's record does not open.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from penguiflow_agents.exceptions import CredentialError

__all__ = ["DEFAULT_KEY_FILE", "KEY_ENV_VAR", "SecretBox"]

KEY_ENV_VAR = "PENGUIFLOW_SECRET_KEY"
DEFAULT_KEY_FILE = os.path.join(".penguiflow", "secret.key")
_VERSION = "v1"
_NONCE_BYTES = 12  # the AES-GCM standard nonce size


def _decode_key(text: str, where: str) -> bytes:
    try:
        key = base64.urlsafe_b64decode(text.strip().encode("ascii") + b"==")
    except (binascii.Error, ValueError, UnicodeEncodeError):
        key = b""
    if len(key) != 32:
        raise CredentialError(
            f"{where} is not a key: it must be the URL-safe base64 of 32 random bytes "
            '(generate one with: python -c "from penguiflow_agents.auth import SecretBox; '
            'print(SecretBox.generate_key())").'
        )
    return key


class SecretBox:
    """Seals and opens short secrets (tokens, client registrations) with AES-256-GCM."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise CredentialError(f"a SecretBox key must be 32 bytes, got {len(key)}.")
        self._aead = AESGCM(key)

    def __repr__(self) -> str:
        return "SecretBox(<key hidden>)"

    @staticmethod
    def generate_key() -> str:
        """A new random key, in the form ``PENGUIFLOW_SECRET_KEY`` takes."""
        return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii").rstrip("=")

    @classmethod
    def from_environment(
        cls,
        *,
        key_file: str | os.PathLike[str] = DEFAULT_KEY_FILE,
        environ: Mapping[str, str] | None = None,
        create: bool = True,
    ) -> SecretBox:
        """The box keyed by ``PENGUIFLOW_SECRET_KEY``, else by ``key_file``.

        The key file is created (mode 0600, its directory 0700) when missing
        and ``create`` is true; a key file readable by others is refused.
        """
        env = os.environ if environ is None else environ
        text = env.get(KEY_ENV_VAR)
        if text:
            return cls(_decode_key(text, f"the environment variable {KEY_ENV_VAR}"))
        path = Path(key_file)
        if not path.exists():
            if not create:
                raise CredentialError(
                    f"no credential key: set {KEY_ENV_VAR} or create the key file {str(path)!r}."
                )
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as fh:
                fh.write(cls.generate_key() + "\n")
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise CredentialError(
                f"the key file {str(path)!r} may be read by other users (mode {mode:o}); "
                f"run: chmod 600 {path}"
            )
        return cls(_decode_key(path.read_text(encoding="ascii"), f"the key file {str(path)!r}"))

    def seal(self, plaintext: bytes, *, context: str) -> str:
        """Ciphertext (text) of ``plaintext``, bound to ``context``."""
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext, context.encode("utf-8"))
        return f"{_VERSION}:" + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    def open(self, sealed: str, *, context: str) -> bytes:
        """The plaintext; CredentialError if it was sealed with another key or context."""
        version, _, body = sealed.partition(":")
        try:
            if version != _VERSION:
                raise ValueError(version)
            raw = base64.urlsafe_b64decode(body.encode("ascii"))
            return self._aead.decrypt(
                raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], context.encode("utf-8")
            )
        except (InvalidTag, ValueError, binascii.Error):
            raise CredentialError(
                f"a stored credential ({context!r}) cannot be opened with this key; "
                f"was {KEY_ENV_VAR} or the key file changed? Run `penguiflow-agents auth login` again."
            ) from None
