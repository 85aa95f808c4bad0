"""Downloads (pooch: checksum, stale file, errors) and safe tar extraction.

Nothing here touches the network: a small HTTP server runs on 127.0.0.1 in a thread.
"""

import hashlib
import io
import os
import socket
import tarfile
import threading
import zipfile
from collections import namedtuple
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import fixtures_bad_data as fx
import pytest

from emolib.cli import main
from emolib.layout import DataError, is_complete
from emolib.prepare import twitter
from emolib.prepare.twitter import download, extract

PAYLOAD = os.urandom(300_000)
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class Handler(BaseHTTPRequestHandler):
    """Serves ``server.files`` and logs each request."""

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        self.server.log.append(self.path)
        data = self.server.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


Server = namedtuple("Server", "url files log")


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.files, httpd.log = {"/data.bin": PAYLOAD}, []
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield Server(f"http://127.0.0.1:{httpd.server_address[1]}", httpd.files, httpd.log)
    httpd.shutdown()
    httpd.server_close()


# ------------------------------------------------------------------ download


def test_download_verifies_and_a_second_call_asks_nothing(server, tmp_path):
    dest = download(f"{server.url}/data.bin", tmp_path / "data.bin", SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD and os.listdir(tmp_path) == ["data.bin"]
    assert download(f"{server.url}/data.bin", dest, SHA.upper(), progress=False) == dest
    assert server.log == ["/data.bin"]


def test_a_stale_file_with_another_checksum_is_fetched_again(server, tmp_path):
    (tmp_path / "data.bin").write_bytes(PAYLOAD[:1000])  # an older or cut-off copy
    dest = download(f"{server.url}/data.bin", tmp_path / "data.bin", SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD and server.log == ["/data.bin"]


def test_checksum_mismatch_is_refused_and_leaves_nothing(server, tmp_path):
    wrong = "0" * 64
    with pytest.raises(DataError, match=f"does not match the known hash.*{wrong}"):
        download(f"{server.url}/data.bin", tmp_path / "data.bin", wrong, progress=False)
    assert os.listdir(tmp_path) == []


def test_http_error_and_offline_are_oserrors(server, tmp_path):
    with pytest.raises(OSError, match="404"):
        download(f"{server.url}/nope.zip", tmp_path / "nope.zip", SHA, progress=False)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    with pytest.raises(OSError, match="Connection refused|Failed to establish"):
        download(f"http://127.0.0.1:{port}/x.zip", tmp_path / "x.zip", SHA, progress=False)
    assert os.listdir(tmp_path) == []


def test_a_url_pooch_cannot_fetch_is_refused(tmp_path):
    with pytest.raises(DataError, match=r"file:///etc/passwd: Unrecognized URL protocol"):
        download("file:///etc/passwd", tmp_path / "x", SHA)
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------ archives


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
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


def test_tar_extract(tmp_path):
    t = make_tar(tmp_path / "a.tar.gz", [tar_member("ds", tarfile.DIRTYPE),
                                         tar_member("ds/a.csv"),
                                         tar_member("ds/link.csv", tarfile.SYMTYPE, "a.csv"),
                                         tar_member("/abs.txt")],
                 {"ds/a.csv": b"hello", "/abs.txt": b"stays inside"})
    out = extract(t, tmp_path / "tx")
    assert (out / "ds/a.csv").read_bytes() == b"hello"
    assert (out / "ds/link.csv").read_bytes() == b"hello"  # a link inside is fine
    assert (out / "abs.txt").read_bytes() == b"stays inside"  # the data filter drops the /
    assert sorted(os.listdir(tmp_path)) == ["a.tar.gz", "tx"]
    assert extract(t, tmp_path / "tx") == out  # extracted once


def test_zip_is_refused_with_what_to_do(tmp_path):
    z = make_zip(tmp_path / "a.zip", {"ds/a.csv": b"x"})
    with pytest.raises(DataError, match=r"a.zip is damaged or not a tar archive; .*\(unpack a "
                                        r"zip and use --from\)"):
        extract(z, tmp_path / "zx")
    assert os.listdir(tmp_path) == ["a.zip"]


@pytest.mark.parametrize(("member", "message"), [
    (tar_member("ds/evil", tarfile.SYMTYPE, "/etc/passwd"), "is a link to an absolute path"),
    (tar_member("ds/evil", tarfile.SYMTYPE, "../../x"), "outside the destination"),
    (tar_member("ds/evil", tarfile.LNKTYPE, "../x"), "outside the destination"),
    (tar_member("ds/dev", tarfile.CHRTYPE), "is a special file"),
    (tar_member("../up.txt"), "outside the destination"),
])
def test_tar_unsafe_members_refused(tmp_path, member, message):
    t = make_tar(tmp_path / "bad.tar.gz", [tar_member("ds", tarfile.DIRTYPE), member],
                 {"../up.txt": b"x"})
    with pytest.raises(DataError, match=f"unsafe member .*{message}"):
        extract(t, tmp_path / "out")
    assert os.listdir(tmp_path) == ["bad.tar.gz"]


def test_archive_limits(tmp_path, monkeypatch):
    monkeypatch.setattr(twitter, "MAX_MEMBERS", 10)
    monkeypatch.setattr(twitter, "MAX_BYTES", 100_000)
    many = make_tar(tmp_path / "many.tar.gz", [tar_member(f"f{i}") for i in range(20)],
                    {f"f{i}": b"" for i in range(20)})
    with pytest.raises(DataError, match="more than 10 members .* archive bomb"):
        extract(many, tmp_path / "o1")
    bomb = make_tar(tmp_path / "bomb.tar.gz", [tar_member("zeros")], {"zeros": b"\0" * 1_000_000})
    assert bomb.stat().st_size < 5000
    with pytest.raises(DataError, match="more than 100,000 bytes"):
        extract(bomb, tmp_path / "o2")
    not_archive = tmp_path / "x.tar.gz"
    not_archive.write_bytes(b"hello")
    with pytest.raises(DataError, match="x.tar.gz is damaged or not a tar archive"):
        extract(not_archive, tmp_path / "o4")
    assert not any(p.name.startswith(("o", ".o")) for p in tmp_path.iterdir())


def test_a_cut_off_tar_is_refused(tmp_path):
    t = make_tar(tmp_path / "cut.tar.gz", [tar_member("zeros")], {"zeros": os.urandom(200_000)})
    t.write_bytes(t.read_bytes()[:50_000])
    with pytest.raises(DataError, match="cut.tar.gz is damaged"):
        extract(t, tmp_path / "out")
    assert os.listdir(tmp_path) == ["cut.tar.gz"]


# ------------------------------------------------------------------ --url end to end


def test_twitter_emoticon_from_url(server, tmp_path, capsys):
    expected = fx.make_bad_dataset(tmp_path / "src" / "twitter-emoticon")
    archive = tmp_path / "tw.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:  # without the planted link that leads out
        tf.add(tmp_path / "src" / "twitter-emoticon", arcname="twitter-emoticon",
               filter=lambda info: None if info.issym() else info)
    server.files["/tw.tar.gz"] = archive.read_bytes()
    url, sha = f"{server.url}/tw.tar.gz", hashlib.sha256(archive.read_bytes()).hexdigest()
    out = tmp_path / "data" / "tw"
    argv = ["data", "twitter-emoticon", "--url", url, "--out", str(out), "--sha256"]

    assert main([*argv, "f" * 64]) == 2
    err = capsys.readouterr().err  # after pooch's "Downloading data from ..." line
    assert err.splitlines()[-1].startswith(f"error: {url}: SHA256 hash of downloaded file")
    assert "does not match the known hash" in err and not out.exists()

    assert main([*argv, sha]) == 0
    printed = capsys.readouterr().out
    assert is_complete(out) and f"wrote {out}: {expected['rows']} rows" in printed
    # the '..' paths, the absolute one and /etc/passwd still lead out of the extracted copy;
    # the links left out of the archive name files that do not exist
    assert "outside-dataset       4" in printed and "missing               5" in printed
    assert os.listdir(tmp_path / "data") == ["tw"]  # the archive is cleaned up
    assert main([*argv, sha]) == 0
    assert "already holds a complete dataset; nothing to do" in capsys.readouterr().out


def test_url_errors_are_one_line(server, tmp_path, capsys):
    argv = ["data", "twitter-emoticon", "--out", str(tmp_path / "o")]
    assert main([*argv, "--url", "http://127.0.0.1:9/x.zip"]) == 2
    assert "--url URL with --sha256 HEX" in capsys.readouterr().err
    assert main([*argv, "--url", f"{server.url}/nope.zip", "--sha256", SHA]) == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith("error: ") and "404" in last
