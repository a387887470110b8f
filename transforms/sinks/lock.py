"""An output folder's lock: the lock files' I/O and the lease a running process keeps renewed.

The rules (who may take the lock) are in ``transforms.sinks.lease``. Creating a generation is
atomic where the storage offers create-if-absent:

- a local folder: the lock is written to a temporary file, then hard-linked to its name, which
  fails if the name exists (so the lock appears whole, never half-written);
- S3: ``PutObject`` with ``If-None-Match: *``, which answers 412 when the key exists.

Other Beam filesystems (``gs://``, ``hdfs://``, ...) offer no create-if-absent through Beam's
API: there the lock is checked, then written, so two runs that start within that moment may
both take the folder. A warning says so when such a folder is claimed.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from typing import Any

from transforms.core.processes import process_alive
from transforms.core.storage import join, split_s3
from transforms.sinks.lease import Holder, generation, lock_name, next_generation, won

log = logging.getLogger(__name__)

# How long a claim lasts unless renewed, and how often the holder renews it. A run killed on
# another host (or whose host slept) frees its folder LEASE_SECONDS after its last renewal.
LEASE_SECONDS = 120.0
RENEW_SECONDS = 30.0
# Tries to take a folder that other processes are taking at the same moment.
_ATTEMPTS = 5


class FolderHeld(Exception):
    """Another process holds the output folder's lock.

    Args:
        holder: What its lock says about that process.
    """

    def __init__(self, holder: Holder):
        super().__init__(holder.run_id)
        self.holder = holder


class ClaimLost(RuntimeError):
    """This process's claim lapsed and another process took the folder."""


class _LocalLocks:
    def __init__(self, folder: str):
        self._folder = folder

    def list(self) -> dict[int, str]:
        try:
            names = os.listdir(self._folder)
        except FileNotFoundError:
            return {}
        texts = {}
        for name in names:
            gen = generation(name)
            if gen is not None:
                try:
                    with open(os.path.join(self._folder, name), encoding="utf-8") as handle:
                        texts[gen] = handle.read()
                except FileNotFoundError:  # pruned since the listing
                    pass
        return texts

    def _temp(self, text: str) -> str:
        os.makedirs(self._folder, exist_ok=True)
        temp = os.path.join(self._folder, f".lock-{uuid.uuid4().hex}")
        with open(temp, "w", encoding="utf-8") as handle:
            handle.write(text)
        return temp

    def create(self, gen: int, text: str) -> bool:
        temp = self._temp(text)
        try:
            os.link(temp, os.path.join(self._folder, lock_name(gen)))
            return True
        except FileExistsError:
            return False
        finally:
            os.unlink(temp)

    def put(self, gen: int, text: str) -> None:
        os.replace(self._temp(text), os.path.join(self._folder, lock_name(gen)))

    def delete(self, gen: int) -> None:
        try:
            os.unlink(os.path.join(self._folder, lock_name(gen)))
        except FileNotFoundError:
            pass


class _S3Locks:
    def __init__(self, folder: str, client: Any):
        self._bucket, key = split_s3(folder)
        self._prefix = key.rstrip("/") + "/" if key else ""
        self._s3 = client

    def list(self) -> dict[int, str]:
        from botocore.exceptions import ClientError

        pages = self._s3.get_paginator("list_objects_v2").paginate(
            Bucket=self._bucket, Prefix=self._prefix + "_LOCK.")
        texts = {}
        for page in pages:
            for obj in page.get("Contents", []):
                gen = generation(obj["Key"][len(self._prefix):])
                if gen is None:
                    continue
                try:
                    body = self._s3.get_object(Bucket=self._bucket, Key=obj["Key"])["Body"]
                    texts[gen] = body.read().decode("utf-8", "replace")
                except ClientError as exc:
                    if exc.response["Error"]["Code"] not in ("NoSuchKey", "404"):
                        raise
        return texts

    def create(self, gen: int, text: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self._s3.put_object(Bucket=self._bucket, Key=self._prefix + lock_name(gen),
                                Body=text.encode("utf-8"), IfNoneMatch="*")
            return True
        except ClientError as exc:
            # 412: the key exists; 409: a concurrent conditional write to it is in progress.
            if exc.response["Error"]["Code"] in ("PreconditionFailed", "ConditionalRequestConflict"):
                return False
            raise

    def put(self, gen: int, text: str) -> None:
        self._s3.put_object(Bucket=self._bucket, Key=self._prefix + lock_name(gen),
                            Body=text.encode("utf-8"))

    def delete(self, gen: int) -> None:
        self._s3.delete_object(Bucket=self._bucket, Key=self._prefix + lock_name(gen))


class _BeamLocks:
    """Any other Beam filesystem: check, then write (not atomic; see the module docstring)."""

    def __init__(self, folder: str):
        self._folder = folder

    def list(self) -> dict[int, str]:
        from apache_beam.io.filesystems import FileSystems

        prefix = self._folder.rstrip("/") + "/"
        texts = {}
        for meta in FileSystems.match([prefix + "_LOCK.*"])[0].metadata_list:
            gen = generation(meta.path[len(prefix):])
            if gen is not None:
                with FileSystems.open(meta.path) as handle:
                    texts[gen] = handle.read().decode("utf-8", "replace")
        return texts

    def create(self, gen: int, text: str) -> bool:
        from apache_beam.io.filesystems import FileSystems

        if FileSystems.exists(join(self._folder, lock_name(gen))):
            return False
        self.put(gen, text)
        return True

    def put(self, gen: int, text: str) -> None:
        from apache_beam.io.filesystems import FileSystems

        with FileSystems.create(join(self._folder, lock_name(gen))) as handle:
            handle.write(text.encode("utf-8"))

    def delete(self, gen: int) -> None:
        from apache_beam.io.filesystems import FileSystems

        path = join(self._folder, lock_name(gen))
        if FileSystems.exists(path):  # as on the other stores, an absent lock is no error
            FileSystems.delete([path])


def _store(folder: str, s3_client: Any) -> Any:
    if folder.startswith("s3://"):
        return _S3Locks(folder, s3_client)
    if "://" not in folder:
        return _LocalLocks(folder)
    log.warning("%s: this filesystem has no create-if-absent, so two runs started at the same "
                "moment may both claim the folder; local and s3:// folders are claimed "
                "atomically", folder)
    return _BeamLocks(folder)


class Lease:
    """This process's hold on an output folder, renewed from a daemon thread until released.

    Args:
        folder: The output folder (local, s3:// or another Beam filesystem).
        run_id: The run that holds it (named to anyone refused).
        s3_client: A boto3 S3 client, for an s3:// folder.
    """

    def __init__(self, folder: str, run_id: str, s3_client: Any = None):
        self.folder = folder
        self.run_id = run_id
        self._store = _store(folder, s3_client)
        self._token = uuid.uuid4().hex
        self._gen: int | None = None
        self._since = 0.0
        self._lost: str | None = None
        self._stop = threading.Event()
        # A renewal in flight when the run ends must not write over the released mark.
        self._writing = threading.Lock()

    def _holder(self, now: float, released: bool = False) -> Holder:
        return Holder(run_id=self.run_id, token=self._token, host=socket.gethostname(),
                      pid=os.getpid(), since=self._since, expires=now + LEASE_SECONDS,
                      released=released)

    def _current(self) -> dict[int, Holder | None]:
        return {gen: Holder.from_json(text) for gen, text in self._store.list().items()}

    def holder(self) -> Holder | None:
        """The live process that holds the folder now, or None when it may be taken."""
        gen, holder = next_generation(self._current(), time.time(), socket.gethostname(),
                                      process_alive)
        return holder if gen is None else None

    def acquire(self) -> None:
        """Take the folder, or raise FolderHeld naming its holder; then start renewing."""
        for _ in range(_ATTEMPTS):
            now = time.time()
            gen, holder = next_generation(self._current(), now, socket.gethostname(),
                                          process_alive)
            if gen is None:
                raise FolderHeld(holder)
            self._since = now
            created = self._store.create(gen, self._holder(now).to_json())
            after = self._current()
            mine = after.get(gen)
            # A create retried after a lost answer finds its own first attempt there.
            if not created and (mine is None or mine.token != self._token):
                continue  # another taker created it first: look again at who holds it
            if won(gen, list(after)):
                break
            self._store.delete(gen)  # not the current lock, so no one relies on it
        else:
            raise ClaimLost(f"--output {self.folder}: {_ATTEMPTS} attempts to claim it each "
                            f"lost to another process; try again")
        self._gen = gen
        for old in (g for g in after if g < gen):  # keep the folder to one lock file
            self._store.delete(old)
        threading.Thread(target=self._renew_loop, daemon=True, name=f"lease-{self.run_id}").start()

    def _renew_loop(self) -> None:
        while not self._stop.wait(RENEW_SECONDS):
            try:
                self._renew()
            except Exception as exc:  # a storage blip: the lease lasts LEASE_SECONDS meanwhile
                log.warning("could not renew the claim on %s: %s", self.folder, exc)
            if self._lost:
                return

    def _renew(self) -> None:
        above = [g for g in self._store.list() if g > self._gen]
        if above:
            self._lost = (f"the claim on --output {self.folder} lapsed (this process was "
                          f"stopped or cut off for over {LEASE_SECONDS:g} s) and another run "
                          f"took the folder")
            log.error("%s", self._lost)
            return
        with self._writing:
            if not self._stop.is_set():
                self._store.put(self._gen, self._holder(time.time()).to_json())

    def check(self) -> None:
        """Raise ClaimLost if another process took the folder: call before publishing."""
        if self._lost is None and any(g > self._gen for g in self._store.list()):
            self._lost = f"another run took --output {self.folder} after this run's claim lapsed"
        if self._lost:
            raise ClaimLost(f"{self._lost}; this run stops without publishing its rows or "
                            f"marking the folder finished: rerun with --run-id {self.run_id} "
                            f"once that run has ended")

    def release(self) -> None:
        """Stop renewing and mark the lock released (unless another process took it)."""
        self._stop.set()
        if self._gen is None or self._lost:
            return
        try:
            with self._writing:
                self._store.put(self._gen, self._holder(time.time(), released=True).to_json())
        except Exception as exc:  # the run's outcome stands; the claim lapses by itself
            log.warning("could not release the claim on %s (%s); it lapses within %g s",
                        self.folder, exc, LEASE_SECONDS)
