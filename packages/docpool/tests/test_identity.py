"""Duplicates collapse into one document with aliases; excluded hashes stay out."""

from __future__ import annotations

import csv
import importlib
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from docpool import Pool, ingest
from docpool.cli import app
from docpool.hashes import read_hash_file
from docpool.identity import sha256_file
from docpool.testing import CorpusTruth


def test_dedup_aliases_and_exclusion(
    corpus: tuple[Path, CorpusTruth], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, truth = corpus
    a, b, c = truth.documents[:3]
    src = tmp_path / "src"
    (src / "finance").mkdir(parents=True)
    (src / "copies").mkdir()
    for doc in (a, b, c):
        shutil.copy(folder / doc.file, src / "finance" / doc.file)
    shutil.copy(folder / a.file, src / "copies" / "same-as-a.pdf")
    bench = tmp_path / "benchmark"
    bench.mkdir()
    shutil.copy(folder / b.file, bench / "benchmark-doc.pdf")

    result = CliRunner().invoke(app, ["hash", str(bench), "--out", str(tmp_path / "bench.txt")])
    assert result.exit_code == 0, result.output
    assert read_hash_file(tmp_path / "bench.txt") == {b.doc_id}

    report = ingest(
        [src], tmp_path / "pool", min_pages=5, exclude_hashes=tmp_path / "bench.txt", workers=1
    )
    pool = Pool(tmp_path / "pool")
    assert sorted(pool.doc_ids()) == sorted([a.doc_id, c.doc_id])
    doc_a = pool.get(a.doc_id)
    # Sorted input order decides which path is the source: "copies/" sorts before "finance/".
    assert doc_a.source_path == str((src / "copies" / "same-as-a.pdf").absolute())
    assert doc_a.aliases == [str((src / "finance" / a.file).absolute())]
    assert doc_a.doc_id == sha256_file(src / "copies" / "same-as-a.pdf")
    assert [(Path(r.path).name, r.reason, r.doc_id) for r in pool.rejects()] == [
        (b.file, "excluded", b.doc_id)
    ]
    assert report.aliases_added == 1 and report.added == 2

    # Hashes are cached by (path, size, mtime): a rerun reads no file in full again.
    ingest_module = importlib.import_module("docpool.ingest")
    hashed: list[Path] = []
    real_sha = ingest_module.sha256_file
    monkeypatch.setattr(ingest_module, "sha256_file", lambda p: hashed.append(p) or real_sha(p))
    # A later run with another copy only adds an alias, and hashes only the new file.
    shutil.copy(folder / a.file, src / "late-copy.pdf")
    again = ingest([src], tmp_path / "pool", min_pages=5, exclude_hashes=tmp_path / "bench.txt")
    assert hashed == [src / "late-copy.pdf"]
    assert again.added == 0 and again.aliases_added == 1
    assert len(Pool(tmp_path / "pool").get(a.doc_id).aliases) == 2
    assert len(Pool(tmp_path / "pool")) == 2


def test_domains_from_folders_mapping_and_manifest(
    corpus: tuple[Path, CorpusTruth], tmp_path: Path
) -> None:
    folder, truth = corpus
    a, b, c = truth.documents[:3]
    for sub, doc in (("medicine", a), ("law", b), ("misc", c)):
        (tmp_path / sub).mkdir()
        shutil.copy(folder / doc.file, tmp_path / sub / doc.file)
    mapping = tmp_path / "domains.json"
    mapping.write_text(json.dumps({c.file: "engineering"}))
    manifest = tmp_path / "list.csv"
    with open(manifest, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "domain"])
        writer.writerow([f"law/{b.file}", "legal"])
        writer.writerow([f"medicine/{a.file}", ""])
        writer.writerow([f"misc/{c.file}", ""])
    ingest([manifest], tmp_path / "pool", min_pages=5, domain_map=mapping)
    pool = Pool(tmp_path / "pool")
    assert pool.get(a.doc_id).domain == "medicine"
    assert pool.get(b.doc_id).domain == "legal"
    assert pool.get(c.doc_id).domain == "engineering"


def test_bad_hash_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "hashes.txt"
    path.write_text("# comment\nnot-a-hash\n")
    with pytest.raises(ValueError, match=r"hashes.txt:2"):
        read_hash_file(path)
