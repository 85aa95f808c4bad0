"""Data-parallel training on the CPU (gloo): 2 processes must compute what 1 process does.

Each rank trains on its half of the global batch; DDP averages the gradients and the
contrastive loss all-gathers the embeddings, so 2 ranks x batch b must end with the weights
of 1 process x batch 2b. Dropout would draw different masks per rank: the test turns it off.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest
import torch

from emolib.config import get_profile
from emolib.prepare.emosynth import generate
from emolib.synth import SynthConfig

BATCH = 32  # global batch 64: 2 steps an epoch over the 128 training posts of tiny_synth


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def dataset(tiny_synth, tmp_path_factory):
    """A private copy of the tiny dataset: its image cache is built here, not in the shared
    one (tests/test_data.py copies the shared folder and expects no cache in it)."""
    root = tmp_path_factory.mktemp("ddp") / "emosynth"
    shutil.copytree(tiny_synth, root, ignore=shutil.ignore_patterns("cache"))
    return root


def _no_dropout_profile():
    prof = get_profile("smoke")
    prof.model.dropout = 0.0
    for enc in (prof.model.text, prof.model.image):
        enc.arch = {**enc.arch, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    return prof


# Adam divides each gradient by its own magnitude (+ eps = 1e-8), so an element whose true
# gradient is 0 (a bias on attention keys: softmax ignores shifts) steps by float noise over
# 1e-8, up to ~lr. With eps = 1e-6 that noise stays 10x below the test's tolerance.
DAMPED_ADAMW = functools.partial(torch.optim.AdamW, eps=1e-6)


def _fit(data, out, batch_size, dist=None, micro_batch=None, stop_after=None):
    """The same setup on every rank: configs, cache, seeded model, then ``fit``."""
    import emolib.train as T
    from emolib.model import EmoticonModel
    from emolib.run import experiment

    exp = experiment(_no_dropout_profile(), data, progress=False, batch_size=batch_size,
                     epochs=2, patience=10, micro_batch=micro_batch)
    T.set_seed(exp.train.seed)
    model = EmoticonModel(exp.model)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    if stop_after:  # every rank dies in the epoch after `stop_after`, as a killed job would
        evaluate, calls = T.evaluate, []

        def dying(*args):
            calls.append(1)
            if len(calls) > stop_after:
                raise KeyboardInterrupt
            return evaluate(*args)

        T.evaluate = dying
        try:
            T.fit(model, exp.cache, exp.train, out, dist=dist, progress=False)
        except KeyboardInterrupt:
            pass
        finally:
            T.evaluate = evaluate
        return None
    result = T.fit(model, exp.cache, exp.train, out, dist=dist, progress=False)
    return model, result, len(exp.cache.indices("train")), initial


def _worker(rank, world, port, data, out, results, micro_batch):
    import torch.distributed as dist

    import emolib.model
    import emolib.train as T
    from emolib.distributed import setup_distributed

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world),
                      RANK=str(rank), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    torch.optim.AdamW = DAMPED_ADAMW  # this process only
    writes = []  # only rank 0 may write files
    save_checkpoint, save_model = T.save_checkpoint, emolib.model.EmoticonModel.save
    T.save_checkpoint = lambda *a: (writes.append("checkpoint"), save_checkpoint(*a))
    emolib.model.EmoticonModel.save = lambda *a, **k: (writes.append("best"),
                                                       save_model(*a, **k))
    info = setup_distributed()
    assert (info.rank, info.world_size) == (rank, world)
    if micro_batch is None:  # interrupted after epoch 1, then resumed on every rank
        _fit(data, out, BATCH, info, stop_after=1)
        dist.barrier()
    model, result, *_ = _fit(data, out, BATCH, info, micro_batch=micro_batch)
    results[rank] = {"state": {k: v.clone() for k, v in model.state_dict().items()},
                     "history": result.history.drop(columns=["epoch_seconds",
                                                             "samples_per_second"]),
                     "writes": writes}
    dist.destroy_process_group()


@pytest.mark.parametrize("micro_batch", [None, 16], ids=["resumed", "2-micro-batches"])
def test_two_gloo_ranks_train_like_one_process_on_the_full_batch(dataset, tmp_path,
                                                                monkeypatch, micro_batch):
    """2 ranks x batch 32 (through a kill and resume; or in 2 micro-batches of 16 each)
    end with the weights of 1 process x batch 64."""
    import torch.multiprocessing as mp

    monkeypatch.setattr(torch.optim, "AdamW", DAMPED_ADAMW)
    ref_model, ref, n_train, initial = _fit(dataset, tmp_path / "one", 2 * BATCH)
    assert n_train // (2 * BATCH) == 2  # two steps an epoch, as on the two ranks
    results = mp.Manager().dict()
    ctx = mp.start_processes(_worker, args=(2, _free_port(), dataset, tmp_path / "two",
                                            results, micro_batch), nprocs=2,
                             start_method="spawn", join=False)
    deadline = time.monotonic() + 300
    while not ctx.join(timeout=5):
        if time.monotonic() > deadline:  # a collective one rank never reached: fail, not hang
            for proc in ctx.processes:
                proc.kill()
            pytest.fail("the two ranks did not finish within 300 s (deadlock?)")
    ref_state = ref_model.state_dict()
    for rank in (0, 1):
        state = results[rank]["state"]
        assert state.keys() == ref_state.keys()
        for key, value in ref_state.items():
            torch.testing.assert_close(state[key], value, atol=1e-5, rtol=0,
                                       msg=lambda m, key=key: f"{key}: {m}")
    for key in ref_state:  # the ranks agree with each other exactly
        assert torch.equal(results[0]["state"][key], results[1]["state"][key]), key
    hist = [results[r]["history"] for r in (0, 1)]
    assert len(hist[0]) == 2 and hist[0]["val_mcc"].equals(hist[1]["val_mcc"])
    assert results[0]["writes"] and results[1]["writes"] == []
    assert hist[0]["train_loss"].tolist() == pytest.approx(ref.history["train_loss"].tolist(),
                                                           abs=1e-5)
    moved = (ref_state["fusion.out.weight"] - initial["fusion.out.weight"]).abs().max()
    assert moved > 100 * 1e-5  # the weights moved far more than the tolerance


def test_torchrun_entry_point_trains_on_two_cpu_processes(tmp_path):
    data, out = tmp_path / "data", tmp_path / "run"
    generate(data, SynthConfig(size=120, image_size=32, seed=5), progress=False)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "emolib", "train", "--profile", "smoke", "--data", str(data), "--out", str(out),
           "--epochs", "1", "--batch-size", "16"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert len(list(out.glob("*.pt"))) == 1 and (out / "checkpoint.pt").is_file()
    assert [row["epoch"] for row in json.loads((out / "metrics.json").read_text())] == [1]
    run = json.loads((out / "run.json").read_text())
    assert (run["world_size"], run["device"], run["precision"]) == (2, "cpu", "fp32")
    # rank 0's report is the best model's metrics on the whole test split
    from emolib.model import EmoticonModel
    from emolib.run import experiment
    from emolib.train import evaluate

    exp = experiment("smoke", data, progress=False)
    test = json.loads((out / "test_metrics.json").read_text())
    assert test["n"] == len(exp.cache.indices("test"))
    assert test == pytest.approx(evaluate(EmoticonModel.load(out / "best"), exp.cache, "test"))
    # both ranks built or read the image cache without racing each other
    assert len(list((data / "cache").glob("images_*.npy"))) == 1
    assert not list((data / "cache").glob("tmp_*"))

