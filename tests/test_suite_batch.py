"""Issue 21.11: two suites run at once into one folder stay apart: each `bench suite`
invocation gives its runs one batch id, and `compare SUITE` takes the newest batch whole."""

from __future__ import annotations

from dataclasses import replace

from bench.results import load_docs, write_result
from bench.results.store import newest_suite_batch
from tests.test_compare import make_result


def _interleaved(folder):
    """Two concurrent `suite smoke` invocations (batches a and b), 3 models x 2 repeats each,
    their files written alternately, b's last file the newest."""
    docs, t = [], 0
    for repeat in range(2):
        for model in ("fc", "cnn", "lenet"):
            for batch, ips in (("a", 1000.0), ("b", 2000.0)):
                r = make_result(model, ips, repeat=repeat, suite="smoke",
                                created=f"2026-12-01T10:00:{t:02d}+00:00")
                docs.append(write_result(replace(r, batch_id=batch), folder))
                t += 1
    return docs


def test_the_newest_batch_is_taken_whole(tmp_path) -> None:
    _interleaved(tmp_path / "sc")
    batch = newest_suite_batch(load_docs([tmp_path / "sc"]), "smoke")
    assert len(batch) == 6  # the heuristic without a batch id found 1 of 6
    assert {d["summary"]["images_per_s"] for d in batch} == {2000.0}
    assert {d["batch_id"] for d in batch} == {"b"}


def test_files_without_a_batch_id_keep_the_old_rule(tmp_path) -> None:
    old = [make_result(m, 500.0, suite="ci", created=f"2024-01-01T00:00:0{i}+00:00")
           for i, m in enumerate(("cnn", "fc"))]
    new = [make_result(m, 900.0, suite="ci", created=f"2024-02-01T00:00:0{i}+00:00")
           for i, m in enumerate(("cnn", "fc"))]
    for r in (*old, *new):
        write_result(r, tmp_path / "r")
    batch = newest_suite_batch(load_docs([tmp_path / "r"]), "ci")
    assert sorted(d["summary"]["images_per_s"] for d in batch) == [900.0, 900.0]


def test_a_suite_gives_its_runs_one_batch_id(tiny_data, tmp_path, bench_cli) -> None:
    out = tmp_path / "out"
    for _ in range(2):
        code, _ = bench_cli("suite", "smoke", "--data-dir", tiny_data[0], "--out", out,
                            "--device", "cpu", "--quiet")
        assert code == 0
    docs = load_docs([out])
    ids = {d.get("batch_id") for d in docs}
    assert len(ids) == 2 and None not in ids
    newest = newest_suite_batch(docs, "smoke")
    assert len({d["batch_id"] for d in newest}) == 1
    assert len(newest) == len(docs) // 2
