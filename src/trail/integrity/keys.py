"""Ed25519 keys for signing checkpoints and retention records.

The private key lives outside the store: a PEM file (``trail keys init`` writes
``DATA_DIR/keys/checkpoint.key``, mode 0600) or ``TRAIL_CHECKPOINT_KEY_FILE``. The public key
(``checkpoint.pub``, 64 hex characters) is what an auditor needs; its key id is the first 16
hex characters of its SHA-256.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from trail.config import Settings
from trail.errors import ConfigError
from trail.files import open_private, private_dir, write_private


@dataclass(frozen=True)
class PublicKey:
    key: Ed25519PublicKey

    @property
    def raw_hex(self) -> str:
        return self.key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()

    @property
    def key_id(self) -> str:
        return hashlib.sha256(bytes.fromhex(self.raw_hex)).hexdigest()[:16]

    def verify(self, signature_hex: str, message: bytes) -> bool:
        try:
            self.key.verify(bytes.fromhex(signature_hex), message)
            return True
        except (InvalidSignature, ValueError):
            return False


@dataclass(frozen=True)
class SigningKey:
    key: Ed25519PrivateKey

    @property
    def public(self) -> PublicKey:
        return PublicKey(self.key.public_key())

    def sign(self, message: bytes) -> str:
        return self.key.sign(message).hex()


def generate() -> SigningKey:
    return SigningKey(Ed25519PrivateKey.generate())


def write_keypair(directory: Path, key: SigningKey, *, overwrite: bool = False) -> tuple[Path, Path]:
    private_dir(directory)
    priv, pub = directory / "checkpoint.key", directory / "checkpoint.pub"
    if priv.exists() and not overwrite:
        raise ConfigError(
            f"{priv} exists; refusing to replace a signing key (checkpoints signed with it would no "
            "longer verify against a new public key)"
        )
    pem = key.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = open_private(priv, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    write_private(pub, (key.public.raw_hex + "\n").encode())
    return priv, pub


def load_signing_key(path: Path) -> SigningKey:
    try:
        obj = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"checkpoint signing key {path}: cannot load ({exc})") from None
    if not isinstance(obj, Ed25519PrivateKey):
        raise ConfigError(f"checkpoint signing key {path}: not an Ed25519 key")
    return SigningKey(obj)


def checkpoint_signing_key(settings: Settings) -> SigningKey:
    """The checkpoint signing key of these settings; in local mode a key pair is created on first use."""
    path = settings.checkpoint_key_path
    if not path.exists():
        if settings.mode == "production":
            raise ConfigError(
                f"no checkpoint signing key at {path}: create one with `trail keys init` or set "
                "TRAIL_CHECKPOINT_KEY_FILE (or TRAIL_CHECKPOINT_SECONDS=0 on sinks that do not seal)"
            )
        write_keypair(path.parent, generate())
    return load_signing_key(path)


def load_public_key(text_or_path: str | Path) -> PublicKey:
    """A public key from 64 hex characters, or a file holding them (or a PEM public key)."""
    text = str(text_or_path).strip()
    path = Path(text)
    is_hex = len(text) == 64 and all(c in "0123456789abcdefABCDEF" for c in text)
    if isinstance(text_or_path, Path) or (not is_hex and path.exists()):
        data = path.read_bytes().strip()
        if data.startswith(b"-----BEGIN"):
            obj = serialization.load_pem_public_key(data)
            if not isinstance(obj, Ed25519PublicKey):
                raise ConfigError(f"public key {path}: not an Ed25519 key")
            return PublicKey(obj)
        text = data.decode("ascii", "replace").strip()
    try:
        return PublicKey(Ed25519PublicKey.from_public_bytes(bytes.fromhex(text)))
    except ValueError:
        raise ConfigError("--public-key: expected 64 hex characters or a file holding them") from None
