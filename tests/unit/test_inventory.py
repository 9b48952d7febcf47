"""Inventory locating, reading, precedence and validation (tfgpu_provision/inventory.py)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from tfgpu_provision import inventory
from tfgpu_provision.errors import EXIT_BAD_INPUT, BadInput

REPO = Path(__file__).resolve().parents[2]
BAD = REPO / "tests" / "fixtures" / "bad_inventories"
BAD_CASES = sorted(p.name for p in BAD.iterdir() if p.is_dir())


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return root


GOOD_HOSTS = """\
    all:
      children:
        gpu_nodes:
          hosts:
            node1:
              ansible_host: 192.0.2.11
    """


# --------------------------------------------------------------------------- shipped


@pytest.mark.parametrize("name", ["lab", "local"])
def test_shipped_inventories_load_and_validate(name: str) -> None:
    inv = inventory.resolve(name)
    assert inv.path == REPO / "inventory" / name
    assert inv.gpu_nodes()
    for host in inv.gpu_nodes():
        options = inv.options_for(host)
        assert set(options) == set(inventory.options())


def test_lab_inventory_has_example_hosts_on_documentation_addresses() -> None:
    inv = inventory.load(REPO / "inventory" / "lab")
    assert len(inv.gpu_nodes()) >= 2
    for host in inv.gpu_nodes():
        assert inv.hosts[host]["ansible_host"].startswith("192.0.2.")


def test_local_inventory_is_this_machine_and_never_reboots_it() -> None:
    inv = inventory.load(REPO / "inventory" / "local")
    assert inv.gpu_nodes() == ["localhost"]
    local = inv.hosts["localhost"]
    assert local["ansible_connection"] == "local"
    assert local["ansible_python_interpreter"] == "{{ ansible_playbook_python }}"
    assert inv.options_for("localhost")["tfgpu_reboot"] == "never"


def test_every_option_is_documented_in_the_lab_group_vars() -> None:
    text = (REPO / "inventory" / "lab" / "group_vars" / "all.yml").read_text(encoding="utf-8")
    missing = [
        name
        for name in inventory.options()
        if not re.search(rf"^#? ?{re.escape(name)}:", text, flags=re.MULTILINE)
    ]
    assert missing == []


def test_documented_defaults_in_lab_group_vars_match_the_schema() -> None:
    text = (REPO / "inventory" / "lab" / "group_vars" / "all.yml").read_text(encoding="utf-8")
    for name, opt in inventory.options().items():
        if opt.default is None:
            continue  # unset by default; the file shows an example instead
        line = re.search(rf"^#? ?{re.escape(name)}:(.*)$", text, flags=re.MULTILINE)
        assert line is not None
        assert yaml.safe_load(line.group(1)) == opt.default, name


def test_schema_defaults_and_examples_pass_their_own_checks(tmp_path: Path) -> None:
    for name, opt in inventory.options().items():
        inventory.validate_vars({name: opt.default}, "default")
        if opt.example is not None:
            inventory.validate_vars({name: opt.example}, "example")
    assert inventory.defaults()["tfgpu_cuda_source"] == "pip"
    assert inventory.defaults()["tfgpu_env_manager"] == "conda"
    assert inventory.defaults()["tfgpu_driver_source"] is None


def test_option_names_are_the_fixed_ones() -> None:
    assert set(inventory.options()) == {
        "tfgpu_tensorflow_version",
        "tfgpu_driver_source",
        "tfgpu_driver_branch",
        "tfgpu_cuda_source",
        "tfgpu_cudnn_source",
        "tfgpu_env_manager",
        "tfgpu_env_name",
        "tfgpu_python_version",
        "tfgpu_reboot",
        "tfgpu_serial",
        "tfgpu_max_fail_percentage",
        "tfgpu_require_gpu",
        "tfgpu_simulate_gpus",
        "tfgpu_sandbox",
        "tfgpu_sandbox_reboot_command",
        "tfgpu_sandbox_boot_time_command",
        "tfgpu_ca_certificates",
        "tfgpu_pip_index_url",
        "tfgpu_wheelhouse",
        "tfgpu_wheelhouse_address",
        "tfgpu_apt_cache",
        "tfgpu_apt_proxy",
        "tfgpu_conda_channels",
    }


# --------------------------------------------------------------------------- bad inventories


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_inventory_is_one_clear_line(case: str) -> None:
    folder = BAD / case
    expected = [line for line in (folder / "expect.txt").read_text().splitlines() if line]
    with pytest.raises(BadInput) as caught:
        inventory.validate(inventory.load(folder))
    message = str(caught.value)
    assert caught.value.exit_code == EXIT_BAD_INPUT == 2
    assert "\n" not in message
    assert "Fix: " in message
    for part in expected:
        assert part in message


def test_there_are_enough_bad_inventory_cases() -> None:
    assert len(BAD_CASES) >= 15
    for case in BAD_CASES:
        assert (BAD / case / "expect.txt").read_text().strip(), case


def test_validate_counts_further_problems(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "hosts.yml": GOOD_HOSTS,
            "group_vars/all.yml": "tfgpu_reboot: sometimes\ntfgpu_serial: [1]\n",
        },
    )
    with pytest.raises(BadInput, match=r"all\.yml:1: .*\(1 more problem\(s\) after this one\)"):
        inventory.validate(inventory.load(tmp_path))
    assert len(inventory.problems(inventory.load(tmp_path))) == 2


# --------------------------------------------------------------------------- good edge cases


def test_yaml_traps_that_are_fine(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "hosts.yml": GOOD_HOSTS,
            "group_vars/all.yml": """\
                tfgpu_tensorflow_version: 2.21.0
                tfgpu_serial: 25%
                tfgpu_require_gpu: "{{ lookup('env', 'REQUIRE_GPU') | bool }}"
                tfgpu_driver_source: none
                tfgpu_python_version:
                my_site_setting: anything
                ansible_become_password: !vault |
                  $ANSIBLE_VAULT;1.1;AES256
                  6162
                """,
        },
    )
    inv = inventory.load(tmp_path)
    inventory.validate(inv)
    assert inv.hosts["node1"]["tfgpu_tensorflow_version"] == "2.21.0"
    assert inv.options_for("node1")["tfgpu_serial"] == "25%"
    inventory.validate_vars({"tfgpu_driver_branch": 535}, "-e")  # no information lost


def test_host_ranges_and_ports_expand(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "hosts.yml": """\
                all:
                  children:
                    gpu_nodes:
                      hosts:
                        node[01:03]:
                        edge:2222:
                          ansible_host: 192.0.2.20
                """
        },
    )
    inv = inventory.load(tmp_path)
    inventory.validate(inv)
    assert inv.gpu_nodes() == ["node01", "node02", "node03", "edge"]
    assert inv.hosts["edge"]["ansible_port"] == 2222


def test_ini_inventory_is_read_with_text_values(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "hosts.ini": """\
                [a100]
                node1 ansible_host=192.0.2.11 tfgpu_simulate_gpus=2

                [gpu_nodes:children]
                a100

                [gpu_nodes:vars]
                tfgpu_require_gpu=false
                tfgpu_env_name=tf
                """
        },
    )
    inv = inventory.load(tmp_path)
    inventory.validate(inv)
    assert inv.gpu_nodes() == ["node1"]
    assert inv.hosts["node1"]["tfgpu_simulate_gpus"] == 2
    assert inv.hosts["node1"]["tfgpu_env_name"] == "tf"


def test_group_loop_is_rejected(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "hosts.ini": """\
                [gpu_nodes]
                node1

                [a:children]
                gpu_nodes

                [gpu_nodes:children]
                a
                """
        },
    )
    with pytest.raises(BadInput, match=r"hosts\.ini:8: .*a loop"):
        inventory.load(tmp_path)


def test_missing_inventory_path_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="not found") as caught:
        inventory.load(tmp_path / "nope")
    assert caught.value.exit_code == 2


# --------------------------------------------------------------------------- precedence

PRECEDENCE = {
    "hosts.yml": """\
        all:
          vars:
            from_all_inline: all
            layer: all-inline
            group_order: all
          children:
            gpu_nodes:
              vars:
                layer: gpu_nodes-inline
                group_order: gpu_nodes
              children:
                a100:
                  vars:
                    group_order: a100
                  hosts:
                    node1:
                      host_layer: inline
                    node2:
        """,
    "group_vars/all.yml": "layer: all-file\nfile_only: all\n",
    "group_vars/gpu_nodes/10-main.yml": "file_only: gpu_nodes\n",
    "group_vars/a100.yml": "gv_order: a100\n",
    "group_vars/gpu_nodes/20-more.yml": "gv_order: gpu_nodes\n",
    "host_vars/node1.yml": "host_layer: file\n",
}


def test_precedence_layers(tmp_path: Path) -> None:
    inv = inventory.load(write(tmp_path, PRECEDENCE))
    node1, node2 = inv.hosts["node1"], inv.hosts["node2"]
    assert node1["from_all_inline"] == "all"
    assert node1["group_order"] == "a100"  # child group beats parent beats all
    assert node1["layer"] == "all-file"  # any group_vars file beats inline group vars
    assert node1["file_only"] == "gpu_nodes"  # deeper group's file beats all's file
    assert node1["gv_order"] == "a100"  # child's file beats parent's file
    assert node1["host_layer"] == "file"  # host_vars file beats inline host vars
    assert "host_layer" not in node2
    assert str(inv.origins["node1"]["host_layer"]).endswith("host_vars/node1.yml:1")
    assert str(inv.origins["node1"]["group_order"]).endswith("hosts.yml:14")
    assert inv.groups["gpu_nodes"] == ["node1", "node2"]
    assert inv.gpu_nodes() == ["node1", "node2"]


def test_precedence_matches_ansible(tmp_path: Path) -> None:
    command = Path(sys.executable).with_name("ansible-inventory")
    if not command.exists():
        pytest.skip("ansible-inventory is not installed next to this Python")
    write(tmp_path, PRECEDENCE)
    inv = inventory.load(tmp_path)
    shown = subprocess.run(
        [str(command), "-i", str(tmp_path / "hosts.yml"), "--list"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    ansible_vars = json.loads(shown.stdout)["_meta"]["hostvars"]
    assert {h: inv.hosts[h] for h in ansible_vars} == ansible_vars


def test_sibling_groups_later_name_wins(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "hosts.yml": """\
                all:
                  children:
                    gpu_nodes:
                      hosts:
                        node1:
                    zeta:
                      vars: {tfgpu_env_name: from-zeta}
                      hosts: {node1: }
                    alpha:
                      vars: {tfgpu_env_name: from-alpha}
                      hosts: {node1: }
                """
        },
    )
    assert inventory.load(tmp_path).hosts["node1"]["tfgpu_env_name"] == "from-zeta"


def test_conflict_only_for_the_host_that_has_it(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "hosts.yml": """\
                all:
                  children:
                    gpu_nodes:
                      hosts:
                        node1:
                        node2:
                          tfgpu_cuda_source: nvidia_repo
                          tfgpu_cudnn_source: nvidia_repo
                """,
            "group_vars/all.yml": "tfgpu_cuda_source: conda\ntfgpu_cudnn_source: conda\n",
        },
    )
    inventory.validate(inventory.load(tmp_path))
    write(tmp_path, {"host_vars/node2.yml": "tfgpu_cudnn_source: pip\n"})
    with pytest.raises(BadInput, match=r"host_vars/node2\.yml:1 .*cudnn_source is pip"):
        inventory.validate(inventory.load(tmp_path))


# --------------------------------------------------------------------------- did you mean


@pytest.mark.parametrize(
    ("written", "meant"),
    [
        ("tfgpu_tensorflow_versoin", "tfgpu_tensorflow_version"),
        ("tfgpu_cudnn_sources", "tfgpu_cudnn_source"),
        ("tfgpu_maxfail_percentage", "tfgpu_max_fail_percentage"),
        ("tfgpu_simulated_gpus", "tfgpu_simulate_gpus"),
    ],
)
def test_unknown_option_suggests_the_close_name(written: str, meant: str) -> None:
    with pytest.raises(BadInput, match=f"Did you mean '{meant}'") as caught:
        inventory.validate_vars({written: "x"}, "-e")
    assert str(caught.value).startswith(f"-e: unknown option '{written}'")


def test_unknown_option_without_a_close_name_says_remove_it() -> None:
    with pytest.raises(BadInput, match="unknown option 'tfgpu_colour'") as caught:
        inventory.validate_vars({"tfgpu_colour": "blue"}, "-e")
    assert "did you mean" not in str(caught.value).lower()
    assert "remove it" in str(caught.value)


def test_users_own_and_ansible_vars_are_left_alone() -> None:
    inventory.validate_vars(
        {
            "ansible_user": "admin",
            "ansible_become": True,
            "ansible_ssh_common_args": "-o ProxyJump=bastion",
            "site_rack": 4,
        },
        "-e",
    )


# --------------------------------------------------------------------------- -e


def test_extra_vars_key_value_pairs_are_typed_by_the_schema() -> None:
    extra = inventory.coerce_extra_vars(
        [
            "tfgpu_require_gpu=false tfgpu_simulate_gpus=2",
            "tfgpu_serial=3",
            "tfgpu_tensorflow_version=2.20",
            "other=1",
            "tfgpu_sandbox=False",
        ]
    )
    assert extra == {
        "tfgpu_require_gpu": False,
        "tfgpu_simulate_gpus": 2,
        "tfgpu_serial": 3,
        "tfgpu_tensorflow_version": "2.20",
        "other": "1",
        "tfgpu_sandbox": False,
    }
    inventory.validate_vars(extra, "-e")
    assert extra.origins["tfgpu_serial"] == "-e tfgpu_serial=3"


def test_extra_vars_json_and_file(tmp_path: Path) -> None:
    file = tmp_path / "vars.yml"
    file.write_text("tfgpu_env_name: lab-env\ntfgpu_tensorflow_version: 2.20\n")
    extra = inventory.coerce_extra_vars(
        ['{"tfgpu_ca_certificates": ["/etc/site.crt"], "tfgpu_serial": "50%"}', f"@{file}"]
    )
    assert extra["tfgpu_ca_certificates"] == ["/etc/site.crt"]
    assert extra["tfgpu_env_name"] == "lab-env"
    trap = r"vars\.yml:2: tfgpu_tensorflow_version: 2\.20 is read by YAML as the number 2\.2,"
    with pytest.raises(BadInput, match=trap):
        inventory.validate_vars(extra, "-e")


def test_extra_vars_text_is_accepted_for_bools_and_ints_but_not_nonsense() -> None:
    inventory.validate_vars({"tfgpu_require_gpu": "false", "tfgpu_simulate_gpus": "4"}, "-e")
    with pytest.raises(BadInput, match="-e: tfgpu_require_gpu must be true or false"):
        inventory.validate_vars({"tfgpu_require_gpu": "maybe"}, "-e")
    with pytest.raises(BadInput, match="must be a list"):
        inventory.validate_vars(inventory.coerce_extra_vars(["tfgpu_conda_channels=x"]), "-e")


@pytest.mark.parametrize(
    ("argument", "problem"),
    [
        ("tfgpu_serial", "expected key=value"),
        ("=3", "expected key=value"),
        ("@", "no file name"),
        ("@/nonexistent/vars.yml", "not found"),
        ("[1, 2]", "must be a mapping"),
        ("{bad", "not valid JSON or YAML"),
        ("tfgpu_env_name='unclosed", "close the quote"),
    ],
)
def test_extra_vars_errors(argument: str, problem: str) -> None:
    with pytest.raises(BadInput, match=re.escape(problem)) as caught:
        inventory.coerce_extra_vars([argument])
    assert caught.value.exit_code == 2


def test_extra_vars_conflict_with_inventory_is_found(tmp_path: Path) -> None:
    write(tmp_path, {"hosts.yml": GOOD_HOSTS, "group_vars/all.yml": "tfgpu_env_manager: venv\n"})
    inv = inventory.load(tmp_path)
    extra = inventory.coerce_extra_vars(["tfgpu_cuda_source=conda", "tfgpu_cudnn_source=conda"])
    inventory.validate(inv)
    with pytest.raises(BadInput, match=r"-e tfgpu_cuda_source=conda .*venv cannot hold conda"):
        inventory.validate(inv, extra)


# --------------------------------------------------------------------------- locate


def test_content_root_holds_the_ansible_content() -> None:
    root = inventory.content_root()
    assert (root / "ansible.cfg").is_file()
    assert (root / "inventory" / "lab" / "hosts.yml").is_file()


def test_locate_by_name_dir_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    root = write(tmp_path / "content", {"inventory/site/hosts.yml": GOOD_HOSTS})
    assert inventory.locate("site", search_root=root) == root / "inventory" / "site"
    assert inventory.locate(str(root / "inventory" / "site")) == root / "inventory" / "site"
    hosts = root / "inventory" / "site" / "hosts.yml"
    assert inventory.locate(str(hosts)) == hosts
    assert inventory.locate("lab") == REPO / "inventory" / "lab"


def test_locate_prefers_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = write(tmp_path / "work", {"inventory/lab/hosts.yml": GOOD_HOSTS})
    monkeypatch.chdir(mine)
    assert inventory.locate("lab").resolve() == (mine / "inventory" / "lab").resolve()


def test_locate_finds_a_sandbox_lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    sandbox = tmp_path / ".cache" / "tfgpu-provision" / "sandbox" / "demo" / "inventory.yml"
    write(sandbox.parent, {"inventory.yml": GOOD_HOSTS})
    assert inventory.locate("demo", search_root=tmp_path / "none") == sandbox
    inventory.validate(inventory.load(sandbox))


def test_locate_missing_says_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(BadInput) as caught:
        inventory.locate("lba")
    message = str(caught.value)
    assert caught.value.exit_code == 2
    assert message.startswith("inventory 'lba' not found (looked in: ")
    assert str(REPO / "inventory" / "lba") in message
    assert "Did you mean 'lab'?" in message
    assert "Fix: pass one of: lab, local" in message
    with pytest.raises(BadInput, match="not found"):
        inventory.locate("./missing/hosts.yml")


def test_nothing_contacts_a_host(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the inventory module tried to reach out")

    monkeypatch.setattr("socket.socket.connect", refuse)
    monkeypatch.setattr("subprocess.Popen.__init__", refuse)
    inventory.validate(inventory.load(inventory.locate("lab")))
