"""Downloads and archive extraction that never leave a half-finished file behind.

A download goes to ``NAME.part``; an interrupted transfer resumes from where it stopped
with an HTTP Range request (in the same run, and in the next run); the file is renamed to
``NAME`` only after its size and SHA-256 check out. Archives are checked member by member
before anything is written (no ``..`` or absolute paths, no links out of the target, no
devices, bounded member count and total size) and extracted into a temporary folder that
is renamed into place at the end. Only the standard library is used (urllib, zipfile,
tarfile).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import socket
import stat
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from tqdm import tqdm

#: Extraction limits: an archive above these is refused as a possible zip bomb.
MAX_MEMBERS = 200_000
MAX_UNPACKED_BYTES = 50 * 2**30
#: Keep this much disk free beyond the file being downloaded.
DISK_MARGIN = 100 * 2**20

_CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A download or extraction that failed; the message says why and what to do."""


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def check_disk_space(folder: str | Path, needed: int, what: str = "the download") -> None:
    """Refuse early when ``needed`` bytes (plus a margin) do not fit on the disk."""
    folder = Path(folder)
    while not folder.exists():
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    if needed + DISK_MARGIN > free:
        raise DownloadError(
            f"not enough disk space for {what}: it needs {_human(needed)} and {folder} has "
            f"{_human(free)} free; free some space or choose another --out")


def download(url: str, dest: str | Path, sha256: str | None = None, *, retries: int = 5,
             timeout: float = 30.0, progress: bool = True) -> Path:
    """Fetch ``url`` to ``dest``, resuming a partial ``dest.part`` and verifying ``sha256``.

    Re-running after success does nothing (the checksum of ``dest`` is checked again).
    """
    dest = Path(dest)
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise DownloadError(f"unsupported URL {url!r}: give an http:// or https:// address")
    sha256 = sha256.lower().strip() if sha256 else None
    if sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise DownloadError(f"--sha256 must be 64 hex digits, got {sha256!r}")
    if dest.is_file():
        if sha256 is None or sha256_file(dest) == sha256:
            return dest
        dest.unlink()  # a stale file under the final name: fetch it again
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    transfer = _Transfer(url, part, timeout, progress)
    try:
        for attempt in range(retries + 1):
            try:
                transfer.fetch()
                break
            except _Retryable as err:
                if attempt == retries:
                    raise DownloadError(f"download of {url} failed after {retries} retries "
                                        f"({err}); run the same command again to resume "
                                        f"from {part}") from err
                time.sleep(min(0.1 * 2**attempt, 5.0))
    finally:
        transfer.close()
    if sha256 is not None:
        got = sha256_file(part)
        if got != sha256:
            part.unlink()
            raise DownloadError(f"checksum mismatch for {url}: expected sha256 {sha256}, got "
                                f"{got}; the file was removed. Check the URL and the --sha256 "
                                "value you were given")
    os.replace(part, dest)
    return dest


class _Retryable(Exception):
    """A transfer that broke off and may be resumed."""


class _Transfer:
    """One file's transfer into ``part``, over as many requests as it takes."""

    def __init__(self, url: str, part: Path, timeout: float, progress: bool):
        self.url, self.part, self.timeout, self.progress = url, part, timeout, progress
        self.total: int | None = None
        self.bar: tqdm | None = None

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def fetch(self) -> None:
        """One request: append to ``part`` from its current size up to the end."""
        have = self.part.stat().st_size if self.part.exists() else 0
        request = urllib.request.Request(self.url, headers={"User-Agent": "emolib-data/1"})
        if have:
            request.add_header("Range", f"bytes={have}-")
        try:
            response = urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as err:
            if err.code == 416 and have and self.total in (None, have):
                return  # Range not satisfiable: the part file is already complete
            if err.code in (429, 500, 502, 503, 504):
                raise _Retryable(f"HTTP {err.code}") from err
            raise DownloadError(f"{self.url}: HTTP {err.code} {err.reason}; check the URL"
                                ) from err
        except urllib.error.URLError as err:
            if isinstance(err.reason, (TimeoutError, socket.timeout, ConnectionResetError)):
                raise _Retryable(str(err.reason)) from err
            host = urllib.parse.urlsplit(self.url).netloc
            raise DownloadError(f"cannot reach {host} ({err.reason}): are you offline? "
                                "Connect to the network, or copy the data here and use --from"
                                ) from err
        except (TimeoutError, ConnectionError, http.client.HTTPException) as err:
            raise _Retryable(str(err) or type(err).__name__) from err
        with response:
            self._receive(response, have)

    def _receive(self, response: http.client.HTTPResponse, have: int) -> None:
        length = response.headers.get("Content-Length", "")
        remaining = int(length) if length.isdigit() else None
        start = have if (response.status == 206 and have) else 0  # else: Range was ignored
        full = start + remaining if remaining is not None else None
        if self.total is not None and full is not None and full != self.total:
            start, full = 0, remaining  # the file changed on the server: start over
        self.total = full
        if remaining is not None:
            check_disk_space(self.part.parent, remaining, self.part.name[:-5])
        if self.progress:
            if self.bar is None:
                self.bar = tqdm(total=full, unit="B", unit_scale=True, disable=None,
                                desc=self.part.name[:-5])
            self.bar.reset(total=full)
            self.bar.update(start)
        try:
            with open(self.part, "ab" if start else "wb") as fh:
                for block in iter(lambda: response.read(_CHUNK), b""):
                    fh.write(block)
                    if self.bar is not None:
                        self.bar.update(len(block))
        except (http.client.IncompleteRead, TimeoutError, ConnectionError) as err:
            raise _Retryable(f"connection lost ({type(err).__name__})") from err
        got = self.part.stat().st_size
        if full is not None and got < full:
            raise _Retryable(f"connection closed after {got} of {full} bytes")
        if full is not None and got > full:
            self.part.unlink()
            raise _Retryable(f"received {got} bytes, more than the {full} announced")


# --------------------------------------------------------------------------- archives

def extract_archive(archive: str | Path, dest: str | Path, *, max_members: int = MAX_MEMBERS,
                    max_bytes: int = MAX_UNPACKED_BYTES) -> Path:
    """Safely extract a zip or tar(.gz/.bz2/.xz) archive into ``dest`` (created atomically).

    Refuses, before writing anything, members with absolute or ``..`` paths, links that
    point outside ``dest``, devices and fifos, more than ``max_members`` members, or more
    than ``max_bytes`` in total; the byte limit is enforced again while writing, since a
    zip header may lie about sizes.
    """
    archive, dest = Path(archive), Path(dest)
    if dest.exists():
        return dest
    tmp = dest.with_name(f".{dest.name}.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        if zipfile.is_zipfile(archive):
            _extract_zip(archive, tmp, max_members, max_bytes)
        elif tarfile.is_tarfile(archive):
            _extract_tar(archive, tmp, max_members, max_bytes)
        else:
            raise DownloadError(f"{archive.name} is neither a zip nor a tar archive; give a "
                                ".zip, .tar, .tar.gz, .tar.bz2 or .tar.xz file")
        os.replace(tmp, dest)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error) as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DownloadError(f"{archive.name} is damaged ({err}); remove it and download it "
                            "again") from err
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def _safe_relpath(name: str, archive: Path) -> PurePosixPath:
    """The member path, or DownloadError when it would land outside the target folder."""
    norm = name.replace("\\", "/")
    path = PurePosixPath(norm)
    if (norm.startswith("/") or (len(norm) > 1 and norm[1] == ":") or ".." in path.parts):
        raise DownloadError(f"{archive.name}: unsafe member path {name!r} (absolute or "
                            "containing '..'); refusing to extract this archive")
    return path


def _link_stays_inside(member: PurePosixPath, target: str) -> bool:
    """Whether a link at ``member`` pointing to ``target`` resolves inside the root."""
    target = target.replace("\\", "/")
    if target.startswith("/") or (len(target) > 1 and target[1] == ":"):
        return False
    depth = len(member.parent.parts)
    for part in PurePosixPath(target).parts:
        if part == "..":
            depth -= 1
            if depth < 0:
                return False
        elif part != ".":
            depth += 1
    return True


def _check_limits(count: int, total: int, archive: Path, max_members: int,
                  max_bytes: int) -> None:
    if count > max_members:
        raise DownloadError(f"{archive.name} has more than {max_members:,} members; refusing "
                            "it as a possible archive bomb")
    if total > max_bytes:
        raise DownloadError(f"{archive.name} unpacks to more than {_human(max_bytes)}; refusing "
                            "it as a possible archive bomb")


def _extract_zip(archive: Path, dest: Path, max_members: int, max_bytes: int) -> None:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        _check_limits(len(infos), 0, archive, max_members, max_bytes)
        total = 0
        links = set()
        for info in infos:
            rel = _safe_relpath(info.filename, archive)
            total += info.file_size
            _check_limits(0, total, archive, max_members, max_bytes)
            if stat.S_ISLNK(info.external_attr >> 16):
                target = zf.read(info).decode("utf-8", "replace")
                if not _link_stays_inside(rel, target):
                    raise DownloadError(f"{archive.name}: link {info.filename!r} points "
                                        f"outside the archive ({target!r}); refusing it")
                links.add(info.filename)  # inside links are skipped: zipfile can't make them
        written = 0
        for info in tqdm(infos, desc=f"extract {archive.name}", unit="file", disable=None):
            if info.filename in links:
                continue
            rel = _safe_relpath(info.filename, archive)
            target = dest.joinpath(*rel.parts) if rel.parts else dest
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as out:
                for block in iter(lambda: src.read(_CHUNK), b""):
                    written += len(block)
                    _check_limits(0, written, archive, max_members, max_bytes)
                    out.write(block)


def _extract_tar(archive: Path, dest: Path, max_members: int, max_bytes: int) -> None:
    with tarfile.open(archive) as tf:
        members = []
        total = 0
        for member in tf:  # streams: a huge member list is refused before it is all read
            members.append(member)
            rel = _safe_relpath(member.name, archive)
            total += member.size if member.isfile() else 0
            _check_limits(len(members), total, archive, max_members, max_bytes)
            if member.issym() and not _link_stays_inside(rel, member.linkname):
                raise DownloadError(f"{archive.name}: link {member.name!r} points outside "
                                    f"the archive ({member.linkname!r}); refusing it")
            if member.islnk():
                _safe_relpath(member.linkname, archive)
            if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
                raise DownloadError(f"{archive.name}: member {member.name!r} is a device or "
                                    "fifo; refusing this archive")
        for member in tqdm(members, desc=f"extract {archive.name}", unit="file", disable=None):
            # The 'data' filter repeats the checks above inside tarfile itself.
            tf.extract(member, dest, filter="data")


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"
