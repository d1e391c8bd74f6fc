"""The GPU smoke bench runs on the CPU with --dry-run (one step per domain) and prints its table."""

from __future__ import annotations

import pytest

from bench import gpu_smoke


def test_dry_run_prints_a_row_per_domain_with_flops(
    capsys: pytest.CaptureFixture, tmp_path, monkeypatch
) -> None:  # noqa: ANN001
    monkeypatch.setattr(gpu_smoke, "OUT", tmp_path / "gpu_smoke.json")
    assert gpu_smoke.main(["--dry-run", "--domains", "pointcloud", "rl", "timeseries"]) == 0
    out = capsys.readouterr().out
    rows = [line.split("|") for line in out.splitlines() if line.startswith("| ") and "domain" not in line]
    assert [r[1].strip() for r in rows] == ["pointcloud", "rl", "timeseries"]
    for r in rows:
        assert float(r[6]) > 0  # GFLOP per step counted by FlopCounterMode
        assert float(r[5]) > 0  # step ms
    assert not (tmp_path / "gpu_smoke.json").exists()  # a dry run writes no result


def test_bf16_peaks_by_device_name() -> None:
    assert gpu_smoke.bf16_peak("NVIDIA H100 80GB HBM3") == pytest.approx(989.4)
    assert gpu_smoke.bf16_peak("NVIDIA H200") == pytest.approx(989.4)
    assert gpu_smoke.bf16_peak("NVIDIA H100 PCIe") == pytest.approx(756.0)
    assert gpu_smoke.bf16_peak("NVIDIA A100-SXM4-80GB") == pytest.approx(312.0)
    assert gpu_smoke.bf16_peak("Tesla T4") is None


def test_without_a_gpu_the_real_run_says_to_use_dry_run(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_smoke.main(["--domains", "rl"]) == 2


def test_report_renders_each_result_with_its_machine_and_load(tmp_path) -> None:  # noqa: ANN001
    import json

    row = {
        "domain": "rl",
        "encoder": "pixel_cnn",
        "batch": 16,
        "precision": "bf16",
        "step_s": 0.02,
        "views_s": 0.01,
        "gflop_per_step": 0.04,
        "tflops": 0.002,
    }
    meta = {
        "started": "2026-12-04T16:28:20+00:00",
        "machine": {"torch": "2.11.0", "cpu_count": 16},
        "load_average_start": 20.0,
        "load_average_end": 1.0,
        "valid": False,
    }
    path = tmp_path / "gpu_smoke.json"
    path.write_text(
        json.dumps({"device": "NVIDIA H200", "bf16_peak_tflops": 989.4, "rows": [row], "meta": meta})
    )
    md = gpu_smoke.report([path])
    assert "| rl | pixel_cnn | 16 | bf16 | 20.0 | 0.04 | 0.002 | 50 | 0.0 |" in md
    assert "INVALID" in md
