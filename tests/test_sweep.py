from pathlib import Path

from bench.cli import main


def test_sweep_writes_results_and_plot(tiny_data, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    code = main(["sweep", "--model", "fc", "--batch-sizes", "8,16", "--steps", "6", "--device",
                 "cpu", "--data-dir", str(tiny_data[0]), "--out", str(out)])
    assert code == 0
    png = out / "sweep-fc.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(list(out.glob("*.json"))) == 2
    assert "batch 16: ok" in capsys.readouterr().out


def test_sweep_rejects_bad_sizes(capsys) -> None:
    assert main(["sweep", "--model", "fc", "--batch-sizes", "8,x"]) == 2
    assert "--batch-sizes" in capsys.readouterr().err
