"""Where run directories live beyond one machine: the one ``storage`` setting.

On a cluster the driver, the Train workers and the Serve replicas run on different nodes and
none of their disks outlives a spot preemption, so every stage keeps its run directory in
storage every node reaches: a shared mount (a local path such as ``/mnt/efs/metamodal``),
``s3://bucket/prefix`` (with an endpoint override for MinIO and other S3-compatible servers),
or any pyarrow filesystem URI (``gs://``, ``hdfs://``...).

A stage still works in a local copy of its run directory (the run-directory classes, numpy and
torch read and write plain files): it ``pull``s the copy from storage before it starts, so a
run started on another node (or after this one's disk is gone) resumes, and ``push``es what it
wrote as it goes. Ray Train checkpoints go straight to storage (``train_storage``). A run
directory's place in storage is its path: relative to the workspace (the driver's working
directory, ``METAMODAL_WORKSPACE`` in the Ray processes it starts) when it lies under it
(``runs/bpr`` is ``<storage>/runs/bpr`` from any job's working directory), else its absolute
path without the leading ``/``.

Each remote run directory carries ``.storage_index.json`` (relative path -> sha256), written
after the files it names: a push uploads only what changed, removes what the local copy no
longer has, and a pull verifies every file it downloads against it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from metamodal.config import ConfigError

ENV_URI = "METAMODAL_STORAGE"
ENV_ENDPOINT = "METAMODAL_STORAGE_ENDPOINT"
ENV_WORKSPACE = "METAMODAL_WORKSPACE"  # what relative keys are relative to (the driver's cwd)
INDEX = ".storage_index.json"
SKIPPED = ("ray_results",)  # written to storage by Ray Train itself (``train_storage``)


class StorageError(RuntimeError):
    """Storage unreachable, or a run directory in it that does not match its index."""


class Storage(BaseModel):
    """A storage root: ``uri`` and, for S3-compatible servers, the ``endpoint`` to reach."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    uri: str
    endpoint: str | None = None
    # run directories under it are keyed by their path relative to it: the driver's working
    # directory, handed to every Ray process (Tune trials and Train controllers run elsewhere)
    workspace: str = Field(default_factory=lambda: os.environ.get(ENV_WORKSPACE) or os.getcwd())
    # the filesystem once made, credentials included: it travels (pickled, never written to
    # disk) to the Ray processes a stage hands this object to, which may lack the credentials
    _made: tuple[Any, str] | None = PrivateAttr(None)

    @classmethod
    def from_env(cls) -> Storage | None:
        """The setting of this process (``METAMODAL_STORAGE``, ``METAMODAL_STORAGE_ENDPOINT``);
        None keeps every run directory on the local disk only."""
        uri = os.environ.get(ENV_URI, "").strip()
        return cls(uri=uri, endpoint=os.environ.get(ENV_ENDPOINT) or None) if uri else None

    def filesystem(self) -> tuple[Any, str]:
        """(the pyarrow filesystem, the root path inside it)."""
        if self._made is None:
            self._made = self._make()
        return self._made

    def _make(self) -> tuple[Any, str]:
        import pyarrow.fs as pafs

        if self.uri.startswith("s3://") and self.endpoint:
            scheme = "https" if self.endpoint.startswith("https://") else "http"
            env = os.environ.get
            keys = ({"access_key": env("AWS_ACCESS_KEY_ID"), "secret_key": env("AWS_SECRET_ACCESS_KEY"),
                     "session_token": env("AWS_SESSION_TOKEN")}
                    if env("AWS_ACCESS_KEY_ID") else {})  # fmt: skip
            # explicit keys travel with the pickled filesystem to Ray Train's workers
            fs = pafs.S3FileSystem(
                endpoint_override=self.endpoint.split("://", 1)[-1],
                scheme=scheme,
                region=env("AWS_REGION", env("AWS_DEFAULT_REGION", "us-east-1")),
                **keys,
            )
            return fs, self.uri.removeprefix("s3://").rstrip("/")
        if "://" not in self.uri:  # a shared mount
            return pafs.LocalFileSystem(), str(Path(self.uri).resolve())
        try:
            fs, root = pafs.FileSystem.from_uri(self.uri)
        except Exception as e:  # pyarrow raises ArrowInvalid / OSError for a bad URI
            raise ConfigError(f"storage {self.uri!r}: not a filesystem URI pyarrow can open ({e})") from e
        return fs, root.rstrip("/")

    def remote(self, local: str | Path) -> str:
        """Where the run directory ``local`` lives inside the filesystem."""
        p = Path(local).resolve()
        try:
            key = p.relative_to(Path(self.workspace).resolve())
        except ValueError:
            key = p.relative_to(p.anchor)
        return f"{self.filesystem()[1]}/{key.as_posix()}"

    def train_storage(self, local: str | Path) -> tuple[str, Any]:
        """(``storage_path``, ``storage_filesystem``) for Ray Train's RunConfig: the run's
        ``ray_results`` in storage, where every worker writes its checkpoints."""
        return f"{self.remote(local)}/ray_results", self.filesystem()[0]

    # pushing and pulling --------------------------------------------------------------------
    def push(self, local: str | Path, names: list[str] | None = None) -> int:
        """Upload what changed in ``local`` (only ``names``, relative paths, when given; else the
        whole directory, and the remote files it no longer has go); the index is written last.
        How many files were uploaded."""
        local = Path(local)
        fs, remote = self.filesystem()[0], self.remote(local)
        index = self._index(remote)
        old = dict(index)
        files = [local / n for n in names] if names is not None else _files(local)
        for f in files:
            rel = f.relative_to(local).as_posix()
            if not f.is_file():  # gone locally (a manifest a new pass withdrew): gone remotely
                if index.pop(rel, None):
                    _delete(fs, f"{remote}/{rel}")
                continue
            digest = file_sha256(f)
            if index.get(rel) != digest:
                _put(fs, f"{remote}/{rel}", f.read_bytes())
                index[rel] = digest
        if names is None:
            for rel in set(index) - {f.relative_to(local).as_posix() for f in files}:
                index.pop(rel)
                _delete(fs, f"{remote}/{rel}")
        _put(fs, f"{remote}/{INDEX}", json.dumps(index, indent=1, sort_keys=True).encode())
        return sum(index.get(k) != old.get(k) for k in index)

    def pull(self, local: str | Path, under: str | None = None) -> int:
        """Download into ``local`` the files of its remote copy that it lacks or holds in
        another version (only those ``under`` a sub-folder when given), each checked against
        the index and written atomically. How many files came; 0 when storage holds no copy."""
        local = Path(local)
        fs, remote = self.filesystem()[0], self.remote(local)
        index = self._index(remote)
        got = 0
        for rel, digest in sorted(index.items()):
            if under is not None and not rel.startswith(under.rstrip("/") + "/"):
                continue
            dest = local / rel
            if dest.is_file() and file_sha256(dest) == digest:
                continue
            data = _get(fs, f"{remote}/{rel}")
            if hashlib.sha256(data).hexdigest() != digest:
                raise StorageError(f"{self.uri}: {remote}/{rel} does not match its index (a "
                                   "push cut short): push the run again from a complete copy")  # fmt: skip
            _write_local(dest, data)
            got += 1
        return got

    def clear(self, local: str | Path, sub: str) -> None:
        """Remove ``sub`` (a folder of the run directory ``local``) from storage: an overwritten
        run's Ray Train checkpoints, which the index does not track."""
        import pyarrow.fs as pafs

        fs, path = self.filesystem()[0], f"{self.remote(local)}/{sub}"
        if fs.get_file_info(path).type == pafs.FileType.Directory:
            fs.delete_dir(path)

    def _index(self, remote: str) -> dict[str, str]:
        import pyarrow.fs as pafs

        fs = self.filesystem()[0]
        if fs.get_file_info(f"{remote}/{INDEX}").type != pafs.FileType.File:
            return {}
        try:
            return json.loads(_get(fs, f"{remote}/{INDEX}"))
        except json.JSONDecodeError as e:
            raise StorageError(f"{self.uri}: {remote}/{INDEX} is unreadable ({e})") from None


def sync_down(local: str | Path, under: str | None = None) -> None:
    """Pull ``local``'s run directory from this process's storage, when one is set."""
    storage = Storage.from_env()
    if storage is not None:
        storage.pull(local, under)


def sync_up(local: str | Path, names: list[str] | None = None) -> None:
    """Push ``local``'s run directory to this process's storage, when one is set."""
    storage = Storage.from_env()
    if storage is not None:
        storage.push(local, names)


def forget_checkpoints(local: str | Path) -> None:
    """Remove an overwritten run's Ray Train checkpoints from this process's storage (else the
    new run would resume from them)."""
    storage = Storage.from_env()
    if storage is not None:
        storage.clear(local, "ray_results")


def _files(local: Path) -> list[Path]:
    """The files a push mirrors: not Ray Train's own, not temporaries, and not those of a run
    directory nested inside (an MMA run's zoo runs), which syncs on its own."""
    if not local.is_dir():
        return []
    nested = [p.parent for p in local.rglob("run.json") if p.parent != local]
    return sorted(
        f for f in local.rglob("*")
        if f.is_file() and f.name != INDEX and not f.name.endswith(".tmp")
        and f.relative_to(local).parts[0] not in SKIPPED
        and not any(n in f.parents for n in nested)
    )  # fmt: skip


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _put(fs: Any, dest: str, data: bytes) -> None:
    """One object written whole: an S3 put is atomic; elsewhere (a shared mount) the bytes go
    to a temporary name first."""
    atomic = fs.type_name == "s3"  # and folders need no creating there
    if not atomic:
        fs.create_dir(dest.rsplit("/", 1)[0], recursive=True)
    target = dest if atomic else f"{dest}.{os.getpid()}.tmp"
    with fs.open_output_stream(target) as out:
        out.write(data)
    if not atomic:
        fs.move(target, dest)


def _write_local(dest: Path, data: bytes) -> None:
    """Atomically, under a name of this process's own: two workers of one node may pull the
    same file at once."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{dest.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, dest)


def _get(fs: Any, path: str) -> bytes:
    with fs.open_input_stream(path) as f:
        return f.read()


def _delete(fs: Any, path: str) -> None:
    with contextlib.suppress(OSError):  # already gone
        fs.delete_file(path)
