import subprocess
import sys

import pytest

from emolib.cli import main


def cli(*args):
    return subprocess.run([sys.executable, "-m", "emolib", *args], capture_output=True, text=True,
                          timeout=600)


@pytest.mark.parametrize("args", [[], ["data"], ["data", "synth"], ["train"], ["evaluate"],
                                  ["predict"], ["data", "instagram"],
                                  ["data", "twitter-emoticon"]])
def test_every_command_has_help(args, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*args, "--help"])
    assert exit_.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_synth_train_evaluate_predict_end_to_end(tmp_path):
    data, run = tmp_path / "d", tmp_path / "r"
    r = cli("data", "synth", "--out", str(data), "--size", "120", "--image-size", "32")
    assert r.returncode == 0, r.stderr
    assert "Bayes ceilings: text-only 0.481  image-only 0.481  joint 0.956" in r.stdout
    again = cli("data", "synth", "--out", str(data), "--size", "120")
    assert again.returncode == 0 and "nothing to do" in again.stdout
    r = cli("train", "--profile", "smoke", "--data", str(data), "--out", str(run),
            "--epochs", "1")
    assert r.returncode == 0, r.stderr
    assert "test (" in r.stdout and "MCC" in r.stdout
    r = cli("evaluate", "--run", str(run), "--data", str(data), "--split", "val")
    assert r.returncode == 0, r.stderr
    assert '"split": "val"' in r.stdout
    image = next((data / "images").iterdir())
    r = cli("predict", "--run", str(run), "--text", "lmao 😂 @bob", "--image", str(image),
            "--top-k", "2")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 2 and all("%" in line for line in lines)


def test_bad_input_gives_a_one_line_error(tmp_path):
    r = cli("train", "--profile", "smoke", "--data", str(tmp_path / "missing"),
            "--out", str(tmp_path / "r"))
    assert r.returncode == 2
    assert r.stderr.startswith("error: dataset folder") and "Traceback" not in r.stderr
    r = cli("data", "synth", "--out", str(tmp_path / "s"), "--classes", "5")
    assert r.returncode == 2 and "classes must be even" in r.stderr
    r = cli("predict", "--run", str(tmp_path), "--text", "x", "--image", "y.png")
    assert r.returncode == 2 and "model.safetensors not found" in r.stderr


def test_train_flags_reach_the_trainer(monkeypatch, tmp_path):
    """Each flag becomes its TrainConfig field; an absent one leaves the profile's."""
    import emolib.run

    seen = []

    def fake_train(profile, data, out, **kw):
        seen.append(kw)
        raise SystemExit(0)

    monkeypatch.setattr(emolib.run, "train", fake_train)
    for extra in ([], ["--augment", "--label-fraction", "0.2", "--seed", "3"]):
        with pytest.raises(SystemExit):
            main(["train", "--data", str(tmp_path), *extra])
    plain, flagged = seen
    assert plain["augment"] is None and plain["label_fraction"] is None
    assert flagged["augment"] is True and flagged["label_fraction"] == 0.2
    assert flagged["seed"] == 3
