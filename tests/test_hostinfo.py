"""Host metadata read the way libtelemetry reads it, from a tree the test builds."""

from __future__ import annotations

import os
from pathlib import Path

from telemd.hostinfo import read_host_info


def write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_a_machine_without_dmi_reads_as_clear_reports_it(tmp_path: Path) -> None:
    write(tmp_path, "etc/os-release", 'PRETTY_NAME="Debian 12"\nID=debian\nVERSION_ID="12"\n')
    info = read_host_info(str(tmp_path))
    assert info.host_type == "no_sv_file|no_pn_file|no_pvr_file"
    assert info.board_name == "no_bn_file|no_bv_file"
    assert info.bios_version == "no_bv_file"
    assert info.system_name == "debian"
    assert info.build == "12"  # unquoted, where Clear's C sent '"12"'
    assert info.cpu_model == "blank"
    assert info.arch == os.uname().machine
    assert info.kernel_version == os.uname().release
    assert info.boot_id == "unknown"


def test_dmi_values_blank_and_present(tmp_path: Path) -> None:
    dmi = "sys/class/dmi/id/"
    write(tmp_path, dmi + "sys_vendor", "QEMU\n")
    write(tmp_path, dmi + "product_name", "\n")
    write(tmp_path, dmi + "product_version", "   \n")
    write(tmp_path, dmi + "board_name", "X570\n")
    write(tmp_path, dmi + "board_vendor", "ASUS\n")
    write(tmp_path, dmi + "bios_version", "1.2.3\n")
    write(
        tmp_path, "usr/lib/os-release", "ID=clear-linux-os\nVARIANT_ID=server\nVERSION_ID=41000\n"
    )
    write(tmp_path, "proc/cpuinfo", "processor\t: 0\nmodel name\t: Intel(R) Xeon(R)\n")
    write(tmp_path, "proc/sys/kernel/random/boot_id", "c0d502a8-156a-4b0a-b418-5affbdc5d4da\n")
    info = read_host_info(str(tmp_path))
    assert info.host_type == "QEMU|blank|blank"
    assert info.board_name == "X570|ASUS"
    assert info.bios_version == "1.2.3"
    assert info.system_name == "clear-linux-os_server"
    assert info.build == "41000"
    assert info.cpu_model == "Intel(R) Xeon(R)"
    assert info.boot_id == "c0d502a8-156a-4b0a-b418-5affbdc5d4da"
    assert set(info.headers()) == {
        "arch",
        "host_type",
        "build",
        "kernel_version",
        "system_name",
        "board_name",
        "cpu_model",
        "bios_version",
    }


def test_etc_os_release_wins_over_usr_lib(tmp_path: Path) -> None:
    write(tmp_path, "etc/os-release", "ID=site\n")
    write(tmp_path, "usr/lib/os-release", "ID=dist\nVERSION_ID=7\n")
    info = read_host_info(str(tmp_path))
    assert (info.system_name, info.build) == ("site", "0")


def test_os_release_is_read_as_os_release_5_says(tmp_path: Path) -> None:
    write(
        tmp_path,
        "etc/os-release",
        "# a comment\n"
        "ID='opensuse-tumbleweed'\n"
        'VARIANT_ID="work\\"station"\n'
        'VERSION_ID="20261201"\n'
        "  BUILD_ID=ignored-when-there-is-a-version\n",
    )
    info = read_host_info(str(tmp_path))
    assert info.system_name == 'opensuse-tumbleweed_work"station'
    assert info.build == "20261201"


def test_build_id_stands_in_for_a_missing_version_id(tmp_path: Path) -> None:
    write(tmp_path, "etc/os-release", 'ID=arch\nBUILD_ID="rolling"\n')
    assert read_host_info(str(tmp_path)).build == "rolling"


def test_an_unbalanced_quote_keeps_the_value(tmp_path: Path) -> None:
    write(tmp_path, "etc/os-release", 'ID="broken\nVERSION_ID=3\n')
    info = read_host_info(str(tmp_path))
    assert (info.system_name, info.build) == ("broken", "3")
