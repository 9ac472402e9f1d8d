"""Evidence that shows it was not altered: every recorded file's SHA-256 in its sidecar as it closes, an
event's segments chained in the order they were locked, and each sidecar signed with the device's Ed25519 key
(``crashwatch keys --signing``), so that ``crashwatch verify`` names what was changed, added or removed.

A signature covers the sidecar's canonical JSON (sorted keys, no spaces) without its ``signature`` field, and
the sidecar covers the files by their SHA-256; the chain (each link the SHA-256 of the one before, the file's
name and its SHA-256) makes the order part of what is signed, and lets an event cut short by a crash be
checked as far as it got. The sidecar carries the public key too, which proves only that the files match
*some* key: trust comes from checking against the device's public key, kept elsewhere (``--key``).
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from crashwatch.contract.bundle import sha256_of
from crashwatch.contract.errors import CrashwatchError

SIGNATURE = "signature"
CHAIN_SEED = "crashwatch-evidence/1"
ALGORITHM = "ed25519"


class SigningKeyError(CrashwatchError):
    """A signing key file that cannot be used; the message names it."""


def canonical(document: dict[str, Any]) -> bytes:
    """What a signature covers: the document without its signature, as canonical JSON."""
    unsigned = {key: value for key, value in document.items() if key != SIGNATURE}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def link(previous: str, name: str, sha256: str) -> str:
    """One link of a chain: the SHA-256 of the link before, a file's name and its SHA-256."""
    return hashlib.sha256(f"{previous}\n{name}\n{sha256}".encode()).hexdigest()


def fingerprint(public: Ed25519PublicKey) -> str:
    """A short name for a public key: the first 16 hex digits of the SHA-256 of its raw bytes."""
    return hashlib.sha256(_raw(public)).hexdigest()[:16]


def _raw(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def create_signing_key(folder: Path, name: str) -> tuple[Path, Path]:
    """Write NAME.sign (the private key, PEM, readable by its owner only) and NAME.sign.pub (the public key,
    to ship to whoever checks the evidence); refuses to overwrite."""
    folder.mkdir(parents=True, exist_ok=True)
    private, public = folder / f"{name}.sign", folder / f"{name}.sign.pub"
    if private.exists() or public.exists():
        raise SigningKeyError(f"{private}: a signing key named {name!r} exists already; choose another name or folder")
    key = Ed25519PrivateKey.generate()
    private.touch(mode=0o600)
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as err:
        raise SigningKeyError(f"{path}: not a public key file ({err})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError(f"{path}: not an Ed25519 public key (`crashwatch keys --signing` makes one)")
    return key


class Signer:
    """The device's private key: signs sidecars."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.public = key.public_key()
        self.fingerprint = fingerprint(self.public)

    @classmethod
    def load(cls, path: Path) -> "Signer":
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as err:
            raise SigningKeyError(f"{path}: not a signing key file ({err})") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise SigningKeyError(f"{path}: not an Ed25519 private key (`crashwatch keys --signing` makes one)")
        return cls(key)

    def sign(self, document: dict[str, Any]) -> dict[str, Any]:
        """``document`` with its ``signature``."""
        value = self._key.sign(canonical(document))
        return {**{k: v for k, v in document.items() if k != SIGNATURE}, SIGNATURE: {
            "algorithm": ALGORITHM, "key": self.fingerprint,
            "public_key": base64.b64encode(_raw(self.public)).decode(), "value": base64.b64encode(value).decode()}}


@dataclass
class Verdict:
    """What ``verify`` found: each problem in words (empty: intact), and what the signature rests on."""

    problems: list[str] = field(default_factory=list)
    signed_by: str | None = None  # the fingerprint of the key that signed it
    trusted: bool = False  # checked against a public key given by the user

    @property
    def intact(self) -> bool:
        return not self.problems


def check_signature(document: dict[str, Any], where: str, trusted: Ed25519PublicKey | None, verdict: Verdict) -> None:
    """Add to ``verdict`` what is wrong with ``document``'s signature (absent, another key, not matching)."""
    signature = document.get(SIGNATURE)
    if not isinstance(signature, dict):
        verdict.problems.append(f"{where}: not signed (the monitor ran without --sign-key)")
        return
    try:
        embedded = Ed25519PublicKey.from_public_bytes(base64.b64decode(signature["public_key"]))
        value = base64.b64decode(signature["value"])
    except (KeyError, TypeError, ValueError) as err:
        verdict.problems.append(f"{where}: malformed signature ({err})")
        return
    key = trusted or embedded
    verdict.signed_by, verdict.trusted = fingerprint(embedded), trusted is not None
    if trusted is not None and fingerprint(trusted) != fingerprint(embedded):
        verdict.problems.append(f"{where}: signed by key {fingerprint(embedded)}, not by the key given "
                                f"({fingerprint(trusted)})")
        return
    try:
        key.verify(value, canonical(document))
    except InvalidSignature:
        verdict.problems.append(f"{where}: the signature does not match its content (edited after it was signed)")


def check_files(folder: Path, entries: Sequence[dict[str, Any]], verdict: Verdict, chained: bool) -> None:
    """Each listed file present with its size and SHA-256, and (``chained``) the chain of links unbroken."""
    previous = CHAIN_SEED
    for entry in entries:
        name, path = entry["name"], folder / entry["name"]
        if not path.is_file():
            verdict.problems.append(f"removed: {name}")
        elif "sha256" not in entry:
            verdict.problems.append(f"{name}: no SHA-256 in the sidecar (recorded before evidence was hashed)")
        elif path.stat().st_size != entry.get("bytes") or sha256_of(path) != entry["sha256"]:
            verdict.problems.append(f"changed: {name} (its SHA-256 differs from the sidecar's)")
        if chained:
            previous = link(previous, name, entry.get("sha256", ""))
            if entry.get("chain") != previous:
                verdict.problems.append(f"{name}: the chain breaks here (a file left out, added or reordered)")
                return
