"""Archive downloads (pooch: SHA-256-checked, atomic) and extraction with safety checks."""

import os
import re
import shutil
import stat
import sys
import tarfile
import zipfile
import zlib
from pathlib import Path, PureWindowsPath

from emolib.layout import DataError

MAX_MEMBERS, MAX_BYTES = 200_000, 50 * 2**30  # more is refused as a possible archive bomb


def download(url: str, dest: Path, sha256: str, progress: bool = True) -> Path:
    """``url`` saved as ``dest``, unless ``dest`` already has this SHA-256.

    pooch downloads into a temporary file beside ``dest`` and moves it there only if the
    checksum matches; a stale ``dest`` is fetched again. A broken transfer is not resumed:
    the next run starts it over (pooch has no HTTP Range support).
    """
    import pooch

    sha256 = sha256.strip().lower()
    if not re.fullmatch(r"https?://\S+", url) or not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise DataError(f"give an http(s):// URL and its 64-hex-digit --sha256, not {url!r} "
                        f"and {sha256!r}")
    try:
        return Path(pooch.retrieve(url, f"sha256:{sha256}", fname=dest.name, path=dest.parent,
                                   progressbar=progress and sys.stderr.isatty()))
    except ValueError as err:  # pooch's checksum mismatch; network errors are OSErrors
        raise DataError(f"checksum mismatch for {url}: {err} Check the URL and the --sha256 "
                        "value you were given") from err


def extract(archive: Path, dest: Path, max_members: int = MAX_MEMBERS,
            max_bytes: int = MAX_BYTES) -> Path:
    """Unpack a zip or tar(.gz/.bz2/.xz) into ``dest``, built beside it, renamed when done.

    tarfile's ``data`` filter (PEP 706) refuses absolute and ``..`` paths, links leading out
    and devices; zipfile has none, so zip members are checked here (zipfile also reads no
    more than a member declares, then fails its CRC). Both get a member and size cap.
    """
    if dest.exists():
        return dest
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            members = [(i.filename, i.file_size, stat.S_ISLNK(i.external_attr >> 16))
                       for i in zf.infolist()]
        for name, _, link in members:
            path = PureWindowsPath(name)  # reads both / and \ as separators
            if link or path.drive or path.root or ".." in path.parts:
                raise DataError(f"{archive.name}: unsafe member {name!r} (absolute, with "
                                "'..', or a link); refusing to extract this archive")
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            members = [(m.name, m.size, False) for m in tf]
    else:
        raise DataError(f"{archive.name} is neither a zip nor a tar archive; give a .zip, "
                        ".tar, .tar.gz, .tar.bz2 or .tar.xz file")
    if len(members) > max_members or sum(size for _, size, _ in members) > max_bytes:
        raise DataError(f"{archive.name} has more than {max_members:,} members or unpacks to "
                        f"more than {max_bytes:,} bytes; refusing it as a possible archive bomb")
    tmp = dest.with_name(f".{dest.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        if zipfile.is_zipfile(archive):
            shutil.unpack_archive(archive, tmp, "zip")
        else:
            shutil.unpack_archive(archive, tmp, "tar", filter="data")
        os.replace(tmp, dest)
    except tarfile.FilterError as err:
        raise DataError(f"{archive.name}: unsafe member ({err}); refusing this archive") from err
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error) as err:
        raise DataError(f"{archive.name} is damaged ({err}); delete it and try again") from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
