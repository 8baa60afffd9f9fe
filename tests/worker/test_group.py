"""The worker side of a multi-device job: the device check names `training.devices`; the ranks
are launched by PyTorch's own launcher, on this host, without elastic restarts."""

from __future__ import annotations

from pathlib import Path

import pytest

from store.settings import Settings
from worker.group import check_devices, launch_command
from worker.options import JobFailure


def test_a_job_may_use_the_workers_devices(tmp_path: Path) -> None:
    check_devices(Settings(data_dir=tmp_path, devices="cpu:2"), 2)
    check_devices(Settings(data_dir=tmp_path), 1)


def test_more_devices_than_the_worker_has_fail_naming_the_option(tmp_path: Path) -> None:
    with pytest.raises(JobFailure) as failure:
        check_devices(Settings(data_dir=tmp_path, devices="cuda:0,cuda:1"), 4)
    assert failure.value.code == "device_unavailable"
    assert failure.value.param == "training.devices"
    assert "QUAFF_DEVICES=cuda:0,cuda:1" in failure.value.message


def test_ranks_run_under_torchrun_on_this_host(tmp_path: Path) -> None:
    command = launch_command(tmp_path / "spec.json", 2)
    assert command[1:3] == ["-m", "torch.distributed.run"]
    assert {"--standalone", "--nproc-per-node=2", "--max-restarts=0"} <= set(command)
    assert command[-3:] == ["-m", "worker.ranks", str(tmp_path / "spec.json")]
