"""emolib.hardware: precision by chip, autocast, loss scaling, and the micro-batch policy,
checked against hand-computed numbers."""

import pytest
import torch

import emolib.hardware as H
from emolib.config import get_profile
from emolib.hardware import (
    activation_bytes_per_sample,
    autocast,
    choose_micro_batch,
    choose_precision,
    default_device,
    gpu_budget,
    grad_scaler,
)
from emolib.model import EmoticonModel

GIB = 2**30


def test_default_device_follows_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_device() == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert default_device() == torch.device("cpu")


@pytest.mark.parametrize("capability, want", [((7, 5), "fp16"), ((7, 0), "fp16"),
                                              ((8, 0), "bf16"), ((8, 9), "bf16"),
                                              ((9, 0), "bf16")])
def test_precision_follows_the_chip(capability, want):
    assert choose_precision(torch.device("cuda"), "auto", capability) == want
    for asked in ("fp32", "fp16", "bf16"):  # an explicit request wins
        assert choose_precision(torch.device("cuda"), asked, capability) == asked


def test_precision_reads_the_chip_when_not_told(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device: (7, 5))
    assert choose_precision(torch.device("cuda")) == "fp16"


def test_precision_on_the_cpu_and_bad_requests():
    assert choose_precision(torch.device("cpu")) == "fp32"
    assert choose_precision(torch.device("cpu"), "auto", (9, 0)) == "fp32"
    assert choose_precision(torch.device("cpu"), "bf16") == "bf16"
    with pytest.raises(ValueError, match="precision must be auto, bf16, fp16 or fp32; got 'fp8'"):
        choose_precision(torch.device("cpu"), "fp8")


@pytest.mark.parametrize("precision, dtype", [("fp32", torch.float32),
                                              ("bf16", torch.bfloat16),
                                              ("fp16", torch.float16)])
def test_autocast_runs_matmuls_in_the_chosen_precision(precision, dtype):
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with autocast(torch.device("cpu"), precision):
        assert (a @ b).dtype == dtype
        assert torch.is_autocast_enabled("cpu") == (precision != "fp32")


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_grad_scaler_only_for_fp16(precision):
    scaler = grad_scaler(torch.device("cpu"), precision)
    assert scaler.is_enabled() == (precision == "fp16")
    assert scaler._device == "cpu"


@pytest.mark.parametrize("precision", ["auto", "FP32", "float16", None, ""])
def test_autocast_and_grad_scaler_refuse_what_is_not_a_precision(precision):
    """Anything but bf16/fp16/fp32 is an error, not a silent fp16 autocast."""
    with pytest.raises(ValueError, match="precision must be bf16, fp16 or fp32"):
        autocast(torch.device("cpu"), precision)
    with pytest.raises(ValueError, match="precision must be bf16, fp16 or fp32"):
        grad_scaler(torch.device("cpu"), precision)


def smoke_model(freeze_text=False, last_layers=None):
    cfg = get_profile("smoke").model
    cfg.text.freeze = freeze_text
    cfg.image.train_last_layers = last_layers
    return EmoticonModel(cfg)


def test_activation_estimate_is_the_documented_count():
    """Smoke model: text 2 layers x 24 tokens x 32 units; ViT 2 layers x (32/8)^2 + 1 = 17
    tokens x 32 units; 46 bytes each under 16-bit autocast, twice that in fp32."""
    text, image = 2 * 24 * 32, 2 * 17 * 32
    model = smoke_model()
    assert activation_bytes_per_sample(model, "bf16") == (text + image) * 46
    assert activation_bytes_per_sample(model, "fp16") == (text + image) * 46
    assert activation_bytes_per_sample(model, "fp32") == (text + image) * 46 * 2
    # a frozen text encoder keeps nothing for backward; only the last layer trains: 1 of 2
    assert activation_bytes_per_sample(smoke_model(freeze_text=True), "bf16") == image * 46
    assert activation_bytes_per_sample(smoke_model(last_layers=1), "bf16") == \
        (text + image // 2) * 46
    cfg = get_profile("smoke").model
    cfg.mode = "text"
    assert activation_bytes_per_sample(EmoticonModel(cfg), "bf16") == text * 46
    cfg = get_profile("smoke").model
    cfg.image_size = 36  # not a multiple of the patch: ViT's grid is 4 x 4 patches
    assert activation_bytes_per_sample(EmoticonModel(cfg), "bf16") == (text + image) * 46


def test_gpu_budget_is_free_memory_within_the_cap(monkeypatch):
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (10 * GIB, 80 * GIB))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device: GIB)
    monkeypatch.delenv("EMOLIB_GPU_MEMORY_GIB", raising=False)
    cuda = torch.device("cuda")
    assert gpu_budget(cuda) == 10 * GIB
    monkeypatch.setenv("EMOLIB_GPU_MEMORY_GIB", "4.5")  # the cap, less what is reserved
    assert gpu_budget(cuda) == int(4.5 * GIB) - GIB
    monkeypatch.setenv("EMOLIB_GPU_MEMORY_GIB", "20")  # a cap above what is free
    assert gpu_budget(cuda) == 10 * GIB


def test_micro_batch_fits_the_budget():
    per_sample, params = 105 * 2**20, 196_000_000
    assert choose_micro_batch(128, per_sample, params, None) == 128  # CPU: whole batch
    assert choose_micro_batch(128, per_sample, params, 139 * GIB) == 128  # an H200
    t4 = choose_micro_batch(128, per_sample, params, 15 * GIB)
    assert t4 == 64 and t4 * per_sample + 18 * params < 0.85 * 15 * GIB
    assert choose_micro_batch(128, per_sample, params, 4 * GIB) == 1  # never 0


@pytest.mark.parametrize("batch, per_sample, params, budget, want", [
    (16, 100, 0, 1000, 8),     # room 850: 8 samples fit, a power of two
    (16, 100, 10, 1000, 4),    # 850 - 18 x 10 = 670: 6 fit, so 4
    (6, 100, 0, 1000, 6),      # the whole batch fits: 6, not a power of two
    (8, 100, 0, 1000, 8),      # 8 fit exactly (the boundary)
    (6, 100, 0, 750, 6),       # 637.5: exactly the batch of 6 fits: whole, not 4
    (16, 100, 0, 1200, 8),     # 1020: 10 fit -> 8
    (16, 100, 0, 1100, 8),     # 935: 9 fit -> 8
    (16, 100, 0, 200, 1),      # 170: 1 fits
    (16, 100, 0, 50, 1),       # nothing fits: still 1
    (16, 0, 0, 1000, 16),      # no activations: everything fits
    (32, 1, 0, 15, 8),         # 12.75 bytes: 12 fit -> 8
])
def test_micro_batch_examples(batch, per_sample, params, budget, want):
    assert choose_micro_batch(batch, per_sample, params, budget) == want


def test_the_constants_are_the_measured_ones():
    assert (H.ACTIVATION_BYTES, H.PARAM_BYTES, H.HEADROOM) == (46, 18, 0.85)
