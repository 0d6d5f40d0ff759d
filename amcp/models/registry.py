"""The model registry: immutable, content-hashed model versions and a production pointer.

A version is the folder a model's ``save(directory)`` wrote, stored byte for byte, plus one
``metadata.json`` (family, features, lookback, training window, metrics, params, code version,
creation time, and a SHA-256 manifest of the artefact's files). Its id is
``v{sequence:04d}-{hash8}``: a sequence number in registration order and the first 8 hex digits
of the content hash, SHA-256 of the canonical JSON of the manifest and the metadata (creation
time excluded, so equal content hashes equal). Nothing of a version is ever rewritten.

Layout under the root (a local folder or any fsspec URL, e.g. ``s3://bucket/models``)::

    versions/v0007-1a2b3c4d/artefact/...    # the model's files
    versions/v0007-1a2b3c4d/metadata.json   # written last: the version exists once it does
    sequence/0007                           # the claim on sequence number 7
    production/00000003.json                # pointer event 3

Concurrency without locks: a writer claims a sequence number, and a pointer change claims the
next event number, by creating an object that must not exist yet (locally a temporary file
hard-linked to its name, which fails if the name is taken; on S3 a PUT with ``If-None-Match:
*``). The loser of a race re-reads and takes the next number, so concurrent registrations and
promotions never overwrite each other. The production pointer is the latest event: each event
holds the whole promotion stack (``promote`` pushes a version, ``rollback`` pops one), so one
object read answers :meth:`ModelRegistry.production` and the events are the pointer's history.

:meth:`ModelRegistry.load` copies a version's files to a temporary folder, checks each file's
hash and the content hash before the model is built, and builds it with
:func:`amcp.models.base.load_model`.

Example::

    registry = ModelRegistry("s3://bucket/models", storage_options={"endpoint_url": ...})
    version = registry.register(model, features=model.feature_names, train_start=date(2010, 1, 4),
                                train_end=date(2015, 12, 31), metrics={"ic": 0.04}, params={"n": 100})
    registry.promote(version.version)
    model = registry.load(registry.production().version)
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import re
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from amcp.data.store import open_filesystem
from amcp.errors import StoreError
from amcp.models.base import ModelError, SignalModel, load_model

__all__ = [
    "CorruptArtefactError",
    "ModelRegistry",
    "ModelVersion",
    "PointerEvent",
    "RegistryError",
    "UnknownVersionError",
    "git_commit",
]

VERSIONS = "versions"
SEQUENCE = "sequence"
PRODUCTION = "production"
ARTEFACT = "artefact"
METADATA = "metadata.json"
MAX_CLAIM_ATTEMPTS = 10_000
"""Claims a writer tries before giving up (each lost race moves it one number on)."""

_VERSION = re.compile(r"^v(\d{4,})-([0-9a-f]{8})$")
_HASH_CHUNK = 1 << 20


class RegistryError(ModelError):
    """The model registry was used incorrectly or its storage failed."""


class UnknownVersionError(RegistryError):
    """No version of that id is registered."""


class CorruptArtefactError(RegistryError):
    """A stored version's files or metadata do not match its recorded hashes."""


@dataclass(frozen=True)
class ModelVersion:
    """One registered model version (its ``metadata.json``).

    Attributes:
        version: the id, ``v{sequence:04d}-{content_hash[:8]}``.
        sequence: registration order, from 1.
        content_hash: SHA-256 (hex) of the manifest and metadata, creation time excluded.
        family: the model family (``model.family``).
        features: the feature names the model takes, in column order.
        lookback: bars of features one prediction needs (1 for tabular models).
        train_start: first session of the training window.
        train_end: last session of the training window.
        metrics: evaluation metrics (NaN where a metric was undefined).
        params: the hyper-parameters, as given.
        code_version: the git commit of the code that trained it, or ``"unknown"``.
        created_at: registration time (UTC).
        files: ``(relative path, sha256 hex, size in bytes)`` of every artefact file, sorted.
    """

    version: str
    sequence: int
    content_hash: str
    family: str
    features: tuple[str, ...]
    lookback: int
    train_start: date
    train_end: date
    metrics: Mapping[str, float]
    params: Mapping[str, Any]
    code_version: str
    created_at: datetime
    files: tuple[tuple[str, str, int], ...]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored as ``metadata.json``."""
        return {
            "version": self.version,
            "sequence": self.sequence,
            "content_hash": self.content_hash,
            **_hashed_fields(self.family, self.features, self.lookback, self.train_start, self.train_end,
                             self.metrics, self.params, self.code_version, self.files),
            "created_at": self.created_at.isoformat(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelVersion:
        """Parse :meth:`to_dict`'s form.

        Raises:
            CorruptArtefactError: if a field is missing or of the wrong type.
        """
        try:
            return cls(
                version=str(data["version"]),
                sequence=int(data["sequence"]),
                content_hash=str(data["content_hash"]),
                family=str(data["family"]),
                features=tuple(str(name) for name in data["features"]),
                lookback=int(data["lookback"]),
                train_start=date.fromisoformat(data["train_start"]),
                train_end=date.fromisoformat(data["train_end"]),
                metrics={str(k): (math.nan if v is None else float(v)) for k, v in data["metrics"].items()},
                params=dict(data["params"]),
                code_version=str(data["code_version"]),
                created_at=datetime.fromisoformat(data["created_at"]),
                files=tuple((str(p), str(h), int(s)) for p, h, s in data["files"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CorruptArtefactError(f"model metadata is malformed: {type(exc).__name__}: {exc}") from None


@dataclass(frozen=True)
class PointerEvent:
    """One change of the production pointer.

    Attributes:
        sequence: event number, from 1.
        action: ``"promote"`` or ``"rollback"``.
        version: the production version after the event (None: nothing in production).
        stack: the promotion stack after the event, oldest first; its last entry is ``version``.
        at: when the event was written (UTC).
    """

    sequence: int
    action: str
    version: str | None
    stack: tuple[str, ...]
    at: datetime


class ModelRegistry:
    """Registered model versions and the production pointer under ``root`` (see the module docstring).

    Safe to share between threads and processes: every write either creates a new object
    exclusively or writes inside a folder its writer claimed.

    Args:
        root: a local folder or fsspec URL (``"s3://bucket/models"``).
        storage_options: fsspec options, e.g. for MinIO ``{"endpoint_url": ..., "key": ...,
            "secret": ...}``. Listings are never cached, so other writers are seen at once.
        clock: the current UTC time (registration and pointer-event stamps).

    Raises:
        RegistryError: if the URL names no known filesystem or its options are invalid.
    """

    def __init__(
        self,
        root: str,
        *,
        storage_options: Mapping[str, Any] | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        try:
            fs, path = open_filesystem(root, storage_options, owner="ModelRegistry")
        except StoreError as exc:
            raise RegistryError(str(exc)) from exc
        self.root = root
        self._fs: fsspec.AbstractFileSystem = fs
        self._path = path.rstrip("/")
        self._local = isinstance(fs, LocalFileSystem)
        self._clock = clock or (lambda: datetime.now(timezone.utc))

    def __repr__(self) -> str:
        return f"ModelRegistry({self.root!r})"

    # ------------------------------------------------------------------ versions

    def register(
        self,
        model: SignalModel,
        *,
        features: Sequence[str],
        train_start: date,
        train_end: date,
        metrics: Mapping[str, float],
        params: Mapping[str, Any],
        code_version: str | None = None,
    ) -> ModelVersion:
        """Store ``model`` as a new immutable version (not promoted).

        The model saves itself into a temporary folder, which is hashed and uploaded; the
        metadata is written last, so a crashed registration leaves no visible version.

        Args:
            model: a fitted model.
            features: the feature names it was trained on; must equal ``model.feature_names``.
            train_start: first session of the training window.
            train_end: last session of the training window (not before ``train_start``).
            metrics: evaluation metrics (non-finite values are stored as NaN).
            params: hyper-parameters; must be JSON-serialisable.
            code_version: the trainer's git commit; default: this checkout's (see :func:`git_commit`).

        Returns:
            The new version.

        Raises:
            RegistryError: on inconsistent arguments, an empty artefact, or a storage failure.
        """
        features = tuple(features)
        if features != tuple(model.feature_names):
            raise RegistryError(
                f"register: features {list(features)} differ from the model's feature_names "
                f"{list(model.feature_names)}")
        if not features:
            raise RegistryError("register: a model needs at least one feature")
        if train_end < train_start:
            raise RegistryError(f"register: train_end {train_end} is before train_start {train_start}")
        lookback = int(model.lookback)
        if lookback < 1:
            raise RegistryError(f"register: model lookback must be >= 1, got {model.lookback!r}")
        clean_metrics = {str(k): float(v) for k, v in metrics.items()}
        try:
            clean_params = json.loads(json.dumps(dict(params), sort_keys=True, allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise RegistryError(
                f"register: params must be JSON-serialisable with finite numbers: {exc}") from None

        with tempfile.TemporaryDirectory(prefix="amcp-model-") as staging:
            model.save(staging)
            files = _manifest(Path(staging))
            if not files:
                raise RegistryError(f"register: {model.family} model's save() wrote no files")
            hashed = _hashed_fields(str(model.family), features, lookback, train_start, train_end,
                                    clean_metrics, clean_params, code_version or git_commit(), files)
            content_hash = _content_hash(hashed)
            sequence = self._claim_sequence(content_hash)
            version_id = f"v{sequence:04d}-{content_hash[:8]}"
            folder = self._version_path(version_id)
            for relative, _, _ in files:
                target = f"{folder}/{ARTEFACT}/{relative}"
                try:
                    if self._local:
                        self._fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
                    self._fs.put_file(os.path.join(staging, relative), target)
                except OSError as exc:
                    raise RegistryError(f"register: cannot upload {target}: {exc}") from exc
        record = {"version": version_id, "sequence": sequence, "content_hash": content_hash, **hashed,
                  "created_at": self._clock().isoformat()}
        self._write_replace(f"{folder}/{METADATA}", _dumps(record))
        return ModelVersion.from_dict(record)

    def versions(self) -> list[ModelVersion]:
        """Every registered version, oldest first."""
        ids = [name for name in self._names(f"{self._path}/{VERSIONS}") if _VERSION.match(name)]
        found = []
        for version_id in sorted(ids, key=_sequence_of):
            try:
                found.append(self.get(version_id))
            except UnknownVersionError:
                continue  # claimed but not committed yet (or a crashed registration)
        return found

    def get(self, version: str) -> ModelVersion:
        """The version ``version``.

        Raises:
            UnknownVersionError: if no such version is registered.
            CorruptArtefactError: if its metadata is unreadable or disagrees with its id.
        """
        if not isinstance(version, str) or not _VERSION.match(version):
            raise UnknownVersionError(f"{version!r} is not a model version id (expected v<sequence>-<hash8>)")
        path = f"{self._version_path(version)}/{METADATA}"
        try:
            raw = self._fs.cat_file(path)
        except FileNotFoundError:
            known = ", ".join(v.version for v in self._committed_tail()) or "none"
            raise UnknownVersionError(
                f"model version {version} is not registered in {self.root} (latest: {known})") from None
        except OSError as exc:
            raise RegistryError(f"cannot read {path}: {exc}") from exc
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise CorruptArtefactError(f"model version {version}: metadata.json is not JSON: {exc}") from None
        found = ModelVersion.from_dict(data)
        if found.version != version:
            raise CorruptArtefactError(f"model version {version}: its metadata names version {found.version}")
        return found

    def load(self, version: str) -> SignalModel:
        """Build the model of ``version`` after checking every file against its hashes.

        Raises:
            UnknownVersionError: if no such version is registered.
            CorruptArtefactError: if a file is missing, extra or changed, or the metadata was edited.
        """
        record = self.get(version)
        expected = _content_hash(_hashed_fields(
            record.family, record.features, record.lookback, record.train_start, record.train_end,
            record.metrics, record.params, record.code_version, record.files))
        if expected != record.content_hash or not version.endswith(expected[:8]):
            raise CorruptArtefactError(
                f"model version {version}: metadata hashes to {expected[:8]}…, recorded "
                f"{record.content_hash[:8]}… (metadata.json was changed after registration)")
        artefact = f"{self._version_path(version)}/{ARTEFACT}"
        stored = set(self._relative_files(artefact))
        listed = {path for path, _, _ in record.files}
        if stored != listed:
            raise CorruptArtefactError(
                f"model version {version}: artefact files differ from its manifest "
                f"(missing {sorted(listed - stored)}, unexpected {sorted(stored - listed)})")
        with tempfile.TemporaryDirectory(prefix="amcp-model-") as local:
            for relative, digest, size in record.files:
                data = self._storage("read", f"{artefact}/{relative}",
                                     lambda r=relative: self._fs.cat_file(f"{artefact}/{r}"))
                actual = hashlib.sha256(data).hexdigest()
                if actual != digest or len(data) != size:
                    raise CorruptArtefactError(
                        f"model version {version}: file {relative} has sha256 {actual[:12]}… and "
                        f"{len(data)} bytes, registered {digest[:12]}… and {size} bytes")
                target = Path(local, relative)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            return load_model(local)

    # ------------------------------------------------------------------ production pointer

    def production(self) -> ModelVersion | None:
        """The version in production, or None if none was promoted (or all were rolled back)."""
        event = self._latest_event()
        if event is None or event.version is None:
            return None
        return self.get(event.version)

    def history(self) -> list[PointerEvent]:
        """Every change of the production pointer, oldest first."""
        numbers = sorted(int(name[:-5]) for name in self._names(f"{self._path}/{PRODUCTION}")
                         if name.endswith(".json") and name[:-5].isdigit())
        return [self._read_event(n) for n in numbers]

    def promote(self, version: str) -> None:
        """Put ``version`` in production (pushing it on the promotion stack).

        Promoting the version already in production changes nothing.

        Raises:
            UnknownVersionError: if no such version is registered.
        """
        self.get(version)

        def change(stack: tuple[str, ...]) -> tuple[str, ...] | None:
            return None if stack and stack[-1] == version else (*stack, version)

        self._change_pointer("promote", change)

    def rollback(self) -> ModelVersion:
        """Put the previously promoted version back in production (popping the current one).

        Returns:
            The version now in production.

        Raises:
            RegistryError: if fewer than two versions are on the promotion stack.
        """

        def change(stack: tuple[str, ...]) -> tuple[str, ...] | None:
            if len(stack) < 2:
                current = stack[-1] if stack else "none"
                raise RegistryError(
                    f"rollback: nothing to roll back to (production: {current}; "
                    f"promotion stack {list(stack)})")
            return stack[:-1]

        event = self._change_pointer("rollback", change)
        if event is None or event.version is None:  # change() always pops to a non-empty stack
            raise RegistryError("rollback: the pointer was not changed")
        return self.get(event.version)

    # ------------------------------------------------------------------ internals

    def _version_path(self, version: str) -> str:
        return f"{self._path}/{VERSIONS}/{version}"

    def _committed_tail(self, count: int = 3) -> list[ModelVersion]:
        names = self._names(f"{self._path}/{VERSIONS}")
        ids = sorted((n for n in names if _VERSION.match(n)), key=_sequence_of)
        tail: list[ModelVersion] = []
        for version_id in reversed(ids):
            try:
                raw = self._fs.cat_file(f"{self._version_path(version_id)}/{METADATA}")
                tail.append(ModelVersion.from_dict(json.loads(raw)))
            except (OSError, ValueError, CorruptArtefactError):
                continue
            if len(tail) == count:
                break
        return tail[::-1]

    def _claim_sequence(self, content_hash: str) -> int:
        folder = f"{self._path}/{SEQUENCE}"
        for _ in range(MAX_CLAIM_ATTEMPTS):
            taken = [int(name) for name in self._names(folder) if name.isdigit()]
            sequence = max(taken, default=0) + 1
            if self._create_exclusive(f"{folder}/{sequence:04d}", content_hash.encode()):
                return sequence
        raise RegistryError(f"register: could not claim a sequence number in {MAX_CLAIM_ATTEMPTS} attempts")

    def _latest_event(self) -> PointerEvent | None:
        numbers = [int(name[:-5]) for name in self._names(f"{self._path}/{PRODUCTION}")
                   if name.endswith(".json") and name[:-5].isdigit()]
        return self._read_event(max(numbers)) if numbers else None

    def _read_event(self, number: int) -> PointerEvent:
        path = f"{self._path}/{PRODUCTION}/{number:08d}.json"
        raw = self._storage("read", path, lambda: self._fs.cat_file(path))
        try:
            data = json.loads(raw)
            return PointerEvent(int(data["sequence"]), str(data["action"]), data["version"],
                                tuple(data["stack"]), datetime.fromisoformat(data["at"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptArtefactError(f"production pointer event {path} is malformed: {exc}") from None

    def _change_pointer(
        self, action: str, change: Callable[[tuple[str, ...]], tuple[str, ...] | None]
    ) -> PointerEvent | None:
        for _ in range(MAX_CLAIM_ATTEMPTS):
            latest = self._latest_event()
            stack = latest.stack if latest else ()
            new_stack = change(stack)
            if new_stack is None:
                return None
            number = (latest.sequence if latest else 0) + 1
            current = new_stack[-1] if new_stack else None
            event = PointerEvent(number, action, current, new_stack, self._clock())
            body = _dumps({"sequence": number, "action": action, "version": event.version,
                           "stack": list(new_stack), "at": event.at.isoformat()})
            if self._create_exclusive(f"{self._path}/{PRODUCTION}/{number:08d}.json", body):
                return event
        raise RegistryError(f"{action}: could not write a pointer event in {MAX_CLAIM_ATTEMPTS} attempts")

    def _names(self, folder: str) -> list[str]:
        """Base names directly under ``folder`` (empty if it does not exist), temporaries skipped."""
        try:
            entries = self._fs.ls(folder, detail=False)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise RegistryError(f"cannot list {folder}: {exc}") from exc
        names = (str(entry).rstrip("/").rsplit("/", 1)[-1] for entry in entries)
        return [name for name in names if name and not name.startswith(".")]

    def _relative_files(self, folder: str) -> list[str]:
        try:
            found = self._fs.find(folder)
        except FileNotFoundError:
            return []
        prefix = folder.rstrip("/") + "/"
        return [str(path)[len(prefix):] for path in found if str(path).startswith(prefix)]

    def _create_exclusive(self, path: str, data: bytes) -> bool:
        """Create ``path`` holding ``data`` unless it exists; return whether this call created it."""
        if self._local:
            temporary = _durable_temporary(path, data)
            try:
                os.link(temporary, path)  # atomic, and fails if the name is taken
            except FileExistsError:
                return False
            finally:
                os.unlink(temporary)
            return True
        try:
            self._fs.pipe_file(path, data, mode="create")
        except FileExistsError:
            return False
        except OSError as exc:
            raise RegistryError(f"cannot create {path}: {exc}") from exc
        return True

    def _write_replace(self, path: str, data: bytes) -> None:
        """Write ``path`` whole, atomically (a local temporary file renamed, or one object PUT)."""
        if self._local:
            os.replace(_durable_temporary(path, data), path)
            return
        self._storage("write", path, lambda: self._fs.pipe_file(path, data))

    @staticmethod
    def _storage(what: str, path: str, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except FileNotFoundError as exc:
            raise CorruptArtefactError(f"cannot {what} {path}: it is missing ({exc})") from exc
        except OSError as exc:
            raise RegistryError(f"cannot {what} {path}: {exc}") from exc


@functools.cache
def git_commit() -> str:
    """The git commit of the checkout this package runs from, or ``"unknown"`` outside one."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True,
            text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    sha = result.stdout.strip()
    return sha if result.returncode == 0 and re.fullmatch(r"[0-9a-f]{40,64}", sha) else "unknown"


def _manifest(folder: Path) -> tuple[tuple[str, str, int], ...]:
    rows = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(_HASH_CHUNK):
                digest.update(chunk)
        rows.append((path.relative_to(folder).as_posix(), digest.hexdigest(), path.stat().st_size))
    return tuple(rows)


def _hashed_fields(
    family: str,
    features: Sequence[str],
    lookback: int,
    train_start: date,
    train_end: date,
    metrics: Mapping[str, float],
    params: Mapping[str, Any],
    code_version: str,
    files: Sequence[tuple[str, str, int]],
) -> dict[str, Any]:
    """The metadata the content hash covers, in its JSON form."""
    return {
        "family": family,
        "features": list(features),
        "lookback": lookback,
        "train_start": train_start.isoformat(),
        "train_end": train_end.isoformat(),
        "metrics": {k: (v if math.isfinite(v) else None) for k, v in sorted(metrics.items())},
        "params": dict(params),
        "code_version": code_version,
        "files": [list(row) for row in files],
    }


def _content_hash(fields: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _dumps(data: Mapping[str, Any]) -> bytes:
    return json.dumps(data, sort_keys=True, indent=1).encode()


def _sequence_of(version: str) -> int:
    match = _VERSION.match(version)
    return int(match.group(1)) if match else -1


def _durable_temporary(path: str, data: bytes) -> str:
    """Write ``data`` to a new hidden temporary file beside ``path``, flushed to disk; return its path."""
    folder, name = os.path.split(path)
    os.makedirs(folder, exist_ok=True)
    temporary = os.path.join(folder, f".{name}.{uuid.uuid4().hex}.tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return temporary
