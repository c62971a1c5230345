"""``shine fetch-data``: pinned downloads checked by sha256, converted to the exact JSONL rows the team's copies hold.

The files are served by a real HTTP server on 127.0.0.1 from ../shared/data/visa_original (the same bytes as the
public repository), through the ``base_url`` mirror setting the real client honours.
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pipeline.datasets import SPLIT_FILES, default_input
from pipeline.errors import DataError
from pipeline.fetch import REMOTE_FILES, fetch_dataset


class _Server:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.hits: Counter[str] = Counter()
        self.fail_first: dict[str, int] = {}  # path -> status to answer on its first request
        self.tamper: set[str] = set()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                path = self.path.lstrip("/")
                server.hits[path] += 1
                status = server.fail_first.get(path)
                if status and server.hits[path] == 1:
                    self.send_response(status)
                    self.send_header("Retry-After", "0")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                file = server.root / path
                if not file.is_file():
                    self.send_error(404)
                    return
                body = file.read_bytes()
                if path in server.tamper:
                    body = body.replace(b"person", b"persom", 1)
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> _Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def mirror(shared_data: Path) -> Iterator[_Server]:
    with _Server(shared_data / "visa_original") as server:
        yield server


def test_pinned_hashes_are_those_of_the_public_files(shared_data: Path) -> None:
    for dataset, files in REMOTE_FILES.items():
        for split, rf in files.items():
            raw = (shared_data / "visa_original" / rf.path).read_bytes()
            assert hashlib.sha256(raw).hexdigest() == rf.sha256, (dataset, split)
            assert rf.url().startswith("https://raw.githubusercontent.com/YYJMJC/") and rf.commit in rf.url()


def test_fetch_converts_to_the_exact_rows_and_resumes(mirror: _Server, shared_data: Path, tmp_path: Path) -> None:
    mirror.fail_first["Charades-CG/train.json"] = 503  # retried (Retry-After honoured)
    messages: list[str] = []
    paths = fetch_dataset("charades-cg", tmp_path, base_url=mirror.url, retries=2, progress=messages.append)
    assert set(paths) == {"train", "test", "novel_composition", "novel_word"}
    for split, path in paths.items():
        assert path == tmp_path / SPLIT_FILES["charades-cg"][split]
        assert path.read_bytes() == (shared_data / SPLIT_FILES["charades-cg"][split]).read_bytes(), split
    assert mirror.hits["Charades-CG/train.json"] == 2
    assert not list(tmp_path.rglob("*.part")) and not list(tmp_path.rglob(".*.tmp"))  # no temp file left
    # a second run downloads nothing; a deleted JSONL is rebuilt from the checked raw file without a request
    before = sum(mirror.hits.values())
    (tmp_path / SPLIT_FILES["charades-cg"]["novel_word"]).unlink()
    fetch_dataset("charades-cg", tmp_path, base_url=mirror.url)
    assert sum(mirror.hits.values()) == before
    assert (tmp_path / SPLIT_FILES["charades-cg"]["novel_word"]).is_file()
    assert sum("downloading" in m for m in messages) == 4


def test_sha_mismatch_writes_nothing_and_says_what_to_do(mirror: _Server, tmp_path: Path) -> None:
    mirror.tamper.add("Charades-CG/novel_word.json")
    with pytest.raises(DataError, match=r"sha256 [0-9a-f]{64} does not match the pinned f3ccd59c.*nothing was written"):
        fetch_dataset("charades-cg", tmp_path, splits=["novel_word"], base_url=mirror.url)
    assert not (tmp_path / "visa_original").exists() or not list((tmp_path / "visa_original").rglob("*.json*"))
    assert not (tmp_path / SPLIT_FILES["charades-cg"]["novel_word"]).exists()
    # a corrupted local copy is reported, not silently replaced or used
    raw = tmp_path / "visa_original" / "Charades-CG" / "novel_word.json"
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_text("{}")
    with pytest.raises(DataError, match="delete it to download the original again"):
        fetch_dataset("charades-cg", tmp_path, splits=["novel_word"], base_url=mirror.url)


def test_missing_file_and_unreachable_source_name_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DataError, match="shine fetch-data --dataset anet-cg"):
        default_input("anet-cg", "novel_word", tmp_path)
    # nothing listens on this port: the error names the file to place by hand and its hash
    with pytest.raises(DataError, match=r"copy the file to .*novel_word.json \(sha256 74e07173"):
        fetch_dataset("anet-cg", tmp_path, splits=["novel_word"], base_url="http://127.0.0.1:9", retries=0,
                      timeout=2)


def test_auto_fetch_on_first_use(mirror: _Server, shared_data: Path, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHINE_AUTO_FETCH", "1")
    monkeypatch.setenv("SHINE_DATA_BASE_URL", mirror.url)
    path = default_input("anet-cg", "novel_word", tmp_path)
    assert path.read_bytes() == (shared_data / SPLIT_FILES["anet-cg"]["novel_word"]).read_bytes()
    assert mirror.hits["ActivityNet_CG/novel_word.json"] == 1 and sum(mirror.hits.values()) == 1


def test_cli_fetch_data(mirror: _Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                        capsys: pytest.CaptureFixture[str]) -> None:
    from shine.cli import main

    monkeypatch.setenv("SHINE_DATA_BASE_URL", mirror.url)
    assert main(["fetch-data", "--dataset", "charades-cg", "--split", "novel_word", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr()
    assert out.out.strip() == f"novel_word\t{tmp_path / SPLIT_FILES['charades-cg']['novel_word']}"
    assert "695 queries" in out.err
    mirror.tamper.add("Charades-CG/test_trivial.json")
    assert main(["fetch-data", "--dataset", "charades-cg", "--split", "test", "--data-dir", str(tmp_path)]) == 2
    assert "DataError" in capsys.readouterr().err
