"""Every shipped profile loads and is sane; user profiles override without code; bad files fail clearly."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlpfctl.errors import ConfigError, UsageError
from mlpfctl.systems.profiles import load_all, load_profile, profile_files, read_profile

SHIPPED = ["jureca", "juwels", "karolina", "leonardo", "local", "lumi", "perlmutter", "vega"]
ISOLATED = {"XDG_CONFIG_HOME": "/nonexistent-mlpfctl-test"}


def test_every_required_system_ships() -> None:
    assert sorted(profile_files(ISOLATED)) == SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_profile_contract(name: str) -> None:
    profile = load_profile(name, ISOLATED)
    assert profile.name == name
    assert profile.default_partition in profile.partitions
    for part in profile.partitions.values():
        assert part.cpus_per_node >= 1
        assert part.gpus_per_node >= 0
        assert part.max_time_s is None or part.max_time_s > 0
    if name != "local":
        # real machines: GPU nodes with a finite limit, and at least one dev/debug pool or one partition
        assert all(p.gpus_per_node > 0 and p.max_time_s for p in profile.partitions.values())


def test_site_facts_that_scripts_depend_on() -> None:
    lumi = load_profile("lumi", ISOLATED)
    assert lumi.account_required and lumi.partitions["standard-g"].gpus_per_node == 8
    assert lumi.miopen_cache and lumi.env["NCCL_SOCKET_IFNAME"] == "hsn0,hsn1,hsn2,hsn3"
    assert lumi.cpu_bind.startswith("mask_cpu:") and lumi.cpu_bind.count(",") == 7
    for jsc in ("jureca", "juwels"):
        assert load_profile(jsc, ISOLATED).master_addr_suffix == "i"
    perlmutter = load_profile("perlmutter", ISOLATED)
    assert perlmutter.constraint == "gpu" and perlmutter.partitions["regular"].qos == "regular"
    assert not perlmutter.account_required


def test_user_profile_overrides_and_adds(tmp_path: Path) -> None:
    (tmp_path / "mycluster.toml").write_text(
        'title = "My cluster"\naccount_required = false\ndefault_partition = "gpu"\n'
        '[partitions.gpu]\ngpus_per_node = 2\ncpus_per_node = 32\nmax_time = "12:00:00"\n'
    )
    (tmp_path / "lumi.toml").write_text(
        'title = "my LUMI"\naccount_required = true\ndefault_partition = "x"\n'
        '[partitions.x]\ngpus_per_node = 8\ncpus_per_node = 56\nmax_time = "1:00:00"\n'
    )
    env = {**ISOLATED, "MLPFCTL_SYSTEMS_PATH": str(tmp_path)}
    assert load_profile("mycluster", env).partitions["gpu"].max_time_s == 12 * 3600
    assert load_profile("lumi", env).title == "my LUMI"
    assert "vega" in {p.name for p in load_all(env)}


def test_user_config_dir_is_searched(tmp_path: Path) -> None:
    systems = tmp_path / "mlpfctl" / "systems"
    systems.mkdir(parents=True)
    (systems / "mine.toml").write_text(
        'title = "t"\naccount_required = false\ndefault_partition = "p"\n'
        '[partitions.p]\ngpus_per_node = 0\ncpus_per_node = 4\nmax_time = "60"\n'
    )
    assert load_profile("mine", {"XDG_CONFIG_HOME": str(tmp_path)}).source == systems / "mine.toml"


def test_unknown_system_lists_names_and_suggests() -> None:
    with pytest.raises(UsageError) as info:
        load_profile("lumy", ISOLATED)
    assert "did you mean 'lumi'" in (info.value.hint or "")
    assert "perlmutter" in (info.value.hint or "")


def test_unknown_partition_lists_partitions() -> None:
    with pytest.raises(UsageError) as info:
        load_profile("lumi", ISOLATED).partition("standard")
    assert "standard-g" in (info.value.hint or "")


HEAD = 'title = "t"\naccount_required = false\n'
PART = "[partitions.p]\ngpus_per_node = 1\ncpus_per_node = 4\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            HEAD + 'default_partition = "p"\n' + PART + 'max_time = "1:00"\ngpu_per_node = 2\n',
            "'partitions.p.gpu_per_node'",
        ),
        ('title = "t"\naccount_required = "no"\ndefault_partition = "p"\n', "not true/false"),
        (HEAD + PART + 'max_time = "1:00:00"\n', "missing key 'default_partition'"),
        (HEAD + 'default_partition = "q"\n' + PART + 'max_time = "1:00:00"\n', "default_partition 'q'"),
        (HEAD + 'default_partition = "p"\n' + PART + 'max_time = "soon"\n', "max_time"),
        (
            HEAD + 'default_partition = "p"\nlauncher = "mpirun"\n' + PART + 'max_time = "1:00"\n',
            "'launcher'",
        ),
        ("title = \n", "not valid TOML"),
    ],
)
def test_bad_profiles_fail_with_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        read_profile(path)
    assert message in info.value.message
    assert str(path) in info.value.message
    assert info.value.hint
