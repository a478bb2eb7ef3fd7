"""Every preset composes and instantiates; bad configs fail with errors that name the key."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hydra.errors import ConfigCompositionException, MissingConfigException
from hydra.utils import get_class
from lightning.pytorch.loggers import Logger

from rnnlab.train import build_task, train
from rnnlab.utils import build as instantiate
from tests.conftest import ROOT, TINY_RECALL

MODELS = sorted(p.stem for p in (ROOT / "conf" / "model").glob("*.yaml"))
DATA = sorted(p.stem for p in (ROOT / "conf" / "data").glob("*.yaml"))


def test_presets_exist():
    assert set(MODELS) >= {"rnn", "lstm", "gru", "birnn", "bilstm", "bigru", "mingru", "minlstm"}
    assert "recall" in DATA


@pytest.mark.parametrize("data", DATA)
@pytest.mark.parametrize("model", MODELS)
def test_every_model_and_data_composes_and_instantiates(make_cfg, model, data):
    cfg = make_cfg([f"model={model}", f"data={data}"])
    assert cfg.model.cell == model.removeprefix("bi")  # a preset names its cell
    assert cfg.model.bidirectional == model.startswith("bi")
    datamodule = instantiate(cfg.data)
    if data == "recall":
        datamodule.setup("fit")
        task = build_task(cfg, datamodule.spec)
        assert task.backbone.cell == cfg.model.cell
    instantiate(cfg.trainer, logger=False, enable_checkpointing=False)


@pytest.mark.parametrize("name", ["fdr", "overfit", "limit"])
def test_debug_presets_compose(make_cfg, name):
    assert make_cfg([f"debug={name}"]).trainer.accelerator == "cpu"


@pytest.mark.parametrize("name", ["default", "cpu", "gpu", "ddp", "ddp_cpu", "mps"])
def test_trainer_presets_compose(make_cfg, name):
    cfg = make_cfg([f"trainer={name}"])
    assert cfg.trainer._target_ == "lightning.pytorch.Trainer"
    assert cfg.trainer.gradient_clip_val > 0


LOGGERS = sorted(p.stem for p in (ROOT / "conf" / "logger").glob("*.yaml"))


def test_logger_presets_exist():
    assert set(LOGGERS) >= {"tensorboard", "csv", "none", "mlflow", "wandb", "many"}


@pytest.mark.parametrize("name", LOGGERS)
def test_every_logger_preset_composes_and_names_its_run(make_cfg, name):
    loggers = make_cfg([f"logger={name}", "model=gru", "model.hidden_size=16"]).logger or {}
    run_names = {"MLFlowLogger": "run_name", "WandbLogger": "name"}
    for node in loggers.values():
        assert issubclass(get_class(node._target_), Logger)  # Lightning's or rnnlab's
        key = run_names.get(node._target_.rsplit(".", 1)[-1])
        if key:  # named as the run directory is
            assert node[key] == "recall_gru_hidden_size-16"


EXPERIMENTS = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_preset_composes_and_instantiates(make_cfg, name):
    cfg = make_cfg([f"experiment={name}"])
    instantiate(cfg.data)  # the constructor checks its arguments; no data is read
    instantiate(cfg.trainer, logger=False, enable_checkpointing=False)


def test_experiment_presets_set_what_they_say(make_cfg):
    cfg = make_cfg(["experiment=recall_long", "model=rnn"])
    assert cfg.data.min_len == 90 and cfg.model.cell == "rnn"
    cfg = make_cfg(["experiment=recall_long", "model=gru", "data.max_len=120"])
    assert cfg.model.chrono_t_max == 120  # follows the longest sequence
    cfg = make_cfg(["experiment=names_gru"])
    assert cfg.data._target_.endswith("NamesDataModule") and cfg.model.cell == "gru"
    assert (cfg.model.hidden_size, cfg.model.num_layers, cfg.task.label_smoothing) == (256, 2, 0.1)
    assert cfg.task.scheduler._target_.endswith("OneCycleLR") and cfg.trainer.max_epochs == 20


def test_unknown_model_names_the_group(make_cfg):
    with pytest.raises(MissingConfigException, match="model/lstmm"):
        make_cfg(["model=lstmm"])


def test_unknown_data_names_the_group(make_cfg):
    with pytest.raises(MissingConfigException, match="data/imbd"):
        make_cfg(["data=imbd"])


def test_mistyped_key_names_the_key(make_cfg):
    with pytest.raises(ConfigCompositionException, match="hiden_size"):
        make_cfg(["model.hiden_size=64"])


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("model.hidden_size=0", "model.hidden_size"),
        ("model.hidden_size=-8", "model.hidden_size"),
        ("model.dropout=1.0", "model.dropout"),
        ("model.dropout=-0.5", "model.dropout"),
        ("model.cell=transformer", "model.cell"),
    ],
)
def test_bad_model_values_fail_before_training_and_name_the_key(make_cfg, override, key):
    with pytest.raises(ValueError, match=key):
        train(make_cfg([*TINY_RECALL, override]))


def test_command_line_reports_a_bad_preset():
    result = subprocess.run(
        [sys.executable, "train.py", "model=lstmm"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode != 0
    assert "model/lstmm" in result.stderr


def test_slurm_launcher_preset_composes(make_cfg):
    from hydra.core.hydra_config import HydraConfig

    make_cfg(["hydra/launcher=slurm", "trainer=ddp"])
    launcher = HydraConfig.get().launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.tasks_per_node == 1 and launcher.max_num_timeout == 3
