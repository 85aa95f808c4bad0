"""Downloads (checksum, resume, disk space, offline) and safe archive extraction.

Nothing here touches the network: a small HTTP server with Range support runs on
127.0.0.1 in a thread, and can be told to drop the connection half way through.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import re
import socket
import tarfile
import threading
import zipfile
from collections import namedtuple
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import fixtures_bad_data as fx
import pytest

import emolib.download as dl
from emolib.download import DownloadError, download, extract_archive, sha256_file
from emolib.sources import add_data_commands, is_complete

PAYLOAD = os.urandom(300_000)
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class Handler(BaseHTTPRequestHandler):
    """Serves ``server.files``; honours ``Range: bytes=N-``; can cut transfers short."""

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        server = self.server
        server.log.append((self.path, self.headers.get("Range")))
        data = server.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match and server.ranges:
            start = int(match[1])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if server.drops > 0:  # announce everything, send half, hang up
            server.drops -= 1
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)


Server = namedtuple("Server", "url files log httpd")


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.files, httpd.log, httpd.drops, httpd.ranges = {"/data.bin": PAYLOAD}, [], 0, True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield Server(f"http://127.0.0.1:{httpd.server_address[1]}", httpd.files, httpd.log, httpd)
    httpd.shutdown()
    httpd.server_close()


# ------------------------------------------------------------------ download


def test_download_verifies_checksum_and_renames_at_the_end(server, tmp_path):
    dest = download(f"{server.url}/data.bin", tmp_path / "data.bin", SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "data.bin.part").exists()
    assert server.log == [("/data.bin", None)]
    # a second call finds the verified file and asks nothing of the server
    download(f"{server.url}/data.bin", dest, SHA, progress=False)
    assert len(server.log) == 1


def test_checksum_mismatch_is_refused(server, tmp_path):
    wrong = "0" * 64
    with pytest.raises(DownloadError, match=f"checksum mismatch.*expected sha256 {wrong}, "
                                            f"got {SHA}"):
        download(f"{server.url}/data.bin", tmp_path / "data.bin", wrong, progress=False)
    assert list(tmp_path.iterdir()) == []  # neither the file nor a .part is left


def test_interrupted_transfer_resumes_with_range(server, tmp_path, monkeypatch):
    monkeypatch.setattr(dl.time, "sleep", lambda s: None)
    server.httpd.drops = 1
    dest = download(f"{server.url}/data.bin", tmp_path / "data.bin", SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD
    half = len(PAYLOAD) // 2
    assert server.log == [("/data.bin", None), ("/data.bin", f"bytes={half}-")]


def test_resume_across_runs_from_a_part_file(server, tmp_path):
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD[:1000])
    dest = download(f"{server.url}/data.bin", tmp_path / "data.bin", SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert server.log == [("/data.bin", "bytes=1000-")]


def test_server_without_range_support_starts_over(server, tmp_path):
    server.httpd.ranges = False
    (tmp_path / "data.bin.part").write_bytes(b"garbage that must not stay")
    dest = download(f"{server.url}/data.bin", tmp_path / "data.bin", SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_complete_part_file_gets_416_and_is_kept(server, tmp_path):
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD)
    assert download(f"{server.url}/data.bin", tmp_path / "data.bin", SHA,
                    progress=False).read_bytes() == PAYLOAD


def test_gives_up_after_retries_and_keeps_the_part(server, tmp_path, monkeypatch):
    monkeypatch.setattr(dl.time, "sleep", lambda s: None)
    server.httpd.drops = 10
    with pytest.raises(DownloadError, match="failed after 2 retries.*run the same command "
                                            "again to resume"):
        download(f"{server.url}/data.bin", tmp_path / "data.bin", SHA, retries=2,
                 progress=False)
    assert not (tmp_path / "data.bin").exists()
    # three attempts, each got half of what was left
    assert (tmp_path / "data.bin.part").stat().st_size == len(PAYLOAD) - len(PAYLOAD) // 8


def test_http_error_is_named(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(f"{server.url}/nope.zip", tmp_path / "nope.zip", SHA, progress=False)


def test_offline_says_so(tmp_path):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    with pytest.raises(DownloadError, match=rf"cannot reach 127.0.0.1:{port} .*offline"):
        download(f"http://127.0.0.1:{port}/x.zip", tmp_path / "x.zip", SHA, progress=False)


def test_disk_space_is_checked_before_writing(server, tmp_path, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(dl.shutil, "disk_usage", lambda p: usage(10**9, 10**9, 5000))
    with pytest.raises(DownloadError, match="not enough disk space .* needs 293.0 KB"):
        download(f"{server.url}/data.bin", tmp_path / "data.bin", SHA, progress=False)
    assert not (tmp_path / "data.bin").exists()
    assert not (tmp_path / "data.bin.part").exists() or \
        (tmp_path / "data.bin.part").stat().st_size == 0


def test_bad_arguments(tmp_path):
    with pytest.raises(DownloadError, match="64 hex digits"):
        download("http://127.0.0.1/x", tmp_path / "x", "abc")
    with pytest.raises(DownloadError, match="http:// or https://"):
        download("file:///etc/passwd", tmp_path / "x", SHA)


# ------------------------------------------------------------------ archives


def make_zip(path: Path, members: dict[str, bytes], links: dict[str, str] = ()) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name, target in dict(links).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777 << 16)  # a symlink
            zf.writestr(info, target)
    return path


def make_tar(path: Path, members: list[tarfile.TarInfo], data: dict[str, bytes] = ()) -> Path:
    data = dict(data)
    with tarfile.open(path, "w:gz") as tf:
        for info in members:
            payload = data.get(info.name)
            if payload is not None:
                info.size = len(payload)
            tf.addfile(info, io.BytesIO(payload) if payload is not None else None)
    return path


def tar_member(name: str, kind=tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info


def test_zip_and_tar_extract(tmp_path):
    z = make_zip(tmp_path / "a.zip", {"ds/a.csv": b"x", "ds/images/1.jpg": b"y"})
    out = extract_archive(z, tmp_path / "zx")
    assert (out / "ds/images/1.jpg").read_bytes() == b"y"
    t = make_tar(tmp_path / "a.tar.gz", [tar_member("ds"  , tarfile.DIRTYPE),
                                         tar_member("ds/a.csv"),
                                         tar_member("ds/link.csv", tarfile.SYMTYPE, "a.csv")],
                 {"ds/a.csv": b"hello"})
    out = extract_archive(t, tmp_path / "tx")
    assert (out / "ds/a.csv").read_bytes() == b"hello"
    assert (out / "ds/link.csv").read_bytes() == b"hello"  # a link inside is fine


@pytest.mark.parametrize(("members", "message"), [
    ({"../evil.txt": b"x"}, "unsafe member path '../evil.txt'"),
    ({"/etc/evil": b"x"}, "unsafe member path '/etc/evil'"),
    ({"ok/../../evil": b"x"}, "unsafe member path"),
    ({"C:/evil": b"x"}, "unsafe member path"),
])
def test_zip_path_traversal_refused(tmp_path, members, message):
    z = make_zip(tmp_path / "bad.zip", members)
    with pytest.raises(DownloadError, match=re.escape(message)):
        extract_archive(z, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / ".out.partial").exists()
    assert not (tmp_path / "evil.txt").exists()


def test_zip_link_outside_refused(tmp_path):
    z = make_zip(tmp_path / "l.zip", {"a.txt": b"x"}, links={"link": "../../etc/passwd"})
    with pytest.raises(DownloadError, match="points outside the archive"):
        extract_archive(z, tmp_path / "out")


@pytest.mark.parametrize(("member", "message"), [
    (tar_member("ds/evil", tarfile.SYMTYPE, "/etc/passwd"), "points outside the archive"),
    (tar_member("ds/evil", tarfile.SYMTYPE, "../../x"), "points outside the archive"),
    (tar_member("ds/evil", tarfile.LNKTYPE, "../x"), "unsafe member path '../x'"),
    (tar_member("ds/dev", tarfile.CHRTYPE), "device or fifo"),
    (tar_member("../up.txt"), "unsafe member path"),
])
def test_tar_unsafe_members_refused(tmp_path, member, message):
    t = make_tar(tmp_path / "bad.tar.gz", [tar_member("ds", tarfile.DIRTYPE), member],
                 {"../up.txt": b"x"})
    with pytest.raises(DownloadError, match=re.escape(message)):
        extract_archive(t, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_archive_limits(tmp_path):
    many = make_zip(tmp_path / "many.zip", {f"f{i}": b"" for i in range(20)})
    with pytest.raises(DownloadError, match="more than 10 members"):
        extract_archive(many, tmp_path / "o1", max_members=10)
    bomb = make_zip(tmp_path / "bomb.zip", {"zeros": b"\0" * 1_000_000})
    assert bomb.stat().st_size < 5000
    with pytest.raises(DownloadError, match="unpacks to more than"):
        extract_archive(bomb, tmp_path / "o2", max_bytes=100_000)
    t = make_tar(tmp_path / "big.tar.gz", [tar_member("zeros")], {"zeros": b"\0" * 200_000})
    with pytest.raises(DownloadError, match="unpacks to more than"):
        extract_archive(t, tmp_path / "o3", max_bytes=100_000)
    not_archive = tmp_path / "x.zip"
    not_archive.write_bytes(b"hello")
    with pytest.raises(DownloadError, match="neither a zip nor a tar"):
        extract_archive(not_archive, tmp_path / "o4")


def test_zip_lying_about_its_size_is_refused(tmp_path):
    z = make_zip(tmp_path / "lie.zip", {"zeros": b"\0" * 500_000})
    raw = bytearray(z.read_bytes())
    # patch the uncompressed size in the central directory to claim 10 bytes
    cd = raw.rfind(b"PK\x01\x02")
    raw[cd + 24: cd + 28] = (10).to_bytes(4, "little")
    z.write_bytes(bytes(raw))
    with pytest.raises(DownloadError, match="damaged|unpacks to more than"):
        extract_archive(z, tmp_path / "out", max_bytes=100_000)
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ --url end to end


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="emolib data")
    add_data_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_twitter_emoticon_from_url(server, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(dl.time, "sleep", lambda s: None)
    expected = fx.make_bad_dataset(tmp_path / "src" / "twitter-emoticon")
    archive = tmp_path / "tw.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(tmp_path / "src" / "twitter-emoticon", arcname="twitter-emoticon")
    server.files["/tw.tar.gz"] = archive.read_bytes()
    server.httpd.drops = 1  # and the first transfer breaks off
    url, sha = f"{server.url}/tw.tar.gz", sha256_file(archive)
    out = tmp_path / "data" / "tw"

    assert run_cli("twitter-emoticon", "--url", url, "--sha256", "f" * 64, "--out", str(out)) == 1
    assert "checksum mismatch" in capsys.readouterr().err
    assert not out.exists()

    assert run_cli("twitter-emoticon", "--url", url, "--sha256", sha, "--out", str(out)) == 0
    printed = capsys.readouterr().out
    assert is_complete(out)
    assert f"wrote {out}: {expected['rows']} rows" in printed
    assert not (tmp_path / "data" / ".tw.download").exists()  # the archive is cleaned up
    assert run_cli("twitter-emoticon", "--url", url, "--sha256", sha, "--out", str(out)) == 0
    assert "already holds a complete dataset; nothing to do" in capsys.readouterr().out


def test_url_needs_sha256(tmp_path, capsys):
    assert run_cli("twitter-emoticon", "--url", "http://127.0.0.1:9/x.zip",
                   "--out", str(tmp_path / "o")) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--url needs --sha256" in err
