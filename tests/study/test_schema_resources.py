"""Study resources against train.device: combinations Ray cannot honour fail at load, in one line."""
import pytest

from connectome.errors import ConfigError
from connectome.study.schema import load_study
from study.conftest import smoke_dict, write_study


@pytest.mark.parametrize("train,resources,message", [
    ({"device": "cpu"}, {"gpu": 1}, "resources.gpu 1 with train.device cpu reserves GPUs no trial uses"),
    ({}, {"gpu": 2}, "resources.gpu 2: the trainer uses one device per trial"),
    ({"device": "cuda:1"}, {"gpu": 1}, "train.device 'cuda:1': a study cannot choose a GPU index"),
    ({"device": "cuda"}, {"gpu": 0}, "train.device 'cuda' with resources.gpu 0"),
    ({"device": "gpu"}, {"gpu": 0}, "train.device 'gpu' is not a device name"),
])
def test_resources_the_device_cannot_use_are_one_line_errors(tmp_path, train, resources, message):
    data = smoke_dict(tmp_path)
    data["train"] = {**data.get("train", {}), **train}
    data["resources"] = {**data.get("resources", {}), **resources}
    with pytest.raises(ConfigError, match=message) as err:
        load_study(write_study(tmp_path, data))
    assert "\n" not in str(err.value) and str(err.value).startswith(str(tmp_path))  # names the file


def test_a_searched_device_is_checked_too(tmp_path):
    data = smoke_dict(tmp_path)
    data["search"] = {**data["search"], "factors": {**data["search"].get("factors", {}),
                                                    "train.device": ["cpu", "cuda:0"]}}
    with pytest.raises(ConfigError, match="cannot choose a GPU index"):
        load_study(write_study(tmp_path, data))


@pytest.mark.parametrize("train,resources", [({}, {"gpu": 0}), ({}, {"gpu": 0.5}), ({"device": "cuda"}, {"gpu": 1})])
def test_workable_resources_load(tmp_path, train, resources):
    data = smoke_dict(tmp_path)
    data["train"] = {**data.get("train", {}), **train}
    data["resources"] = {**data.get("resources", {}), **resources}
    assert load_study(write_study(tmp_path, data)).resources.gpu == resources["gpu"]
