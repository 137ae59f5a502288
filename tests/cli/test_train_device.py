"""`connectome train` with a CUDA index the machine lacks: exit 2 and one line, not a failed trial."""
import torch

from connectome.cli import main


def test_missing_cuda_index_exits_2_with_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    code = main(["train", "--dataset", "synthetic", "--epochs", "1", "--device", "cuda:1",
                 "--trial-dir", str(tmp_path / "t")])
    out, err = capsys.readouterr()
    assert code == 2 and "cuda:1" in err and "1 CUDA device" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "t" / "record.json").exists()
