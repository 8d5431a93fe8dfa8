"""docs/devices.md's "Several machines" examples, checked for syntax (they are not run on a
cluster): the params block validates, every shell script passes `bash -n`, the Kubernetes
manifests are YAML of the kinds they claim, and every `nnlab join` option they use exists."""

from __future__ import annotations

import re
import subprocess

import yaml

from nnlab.cli.entry import parser
from tests.support.helpers import ROOT, project_params


def _blocks() -> list[tuple[str, str]]:
    text = (ROOT / "docs/devices.md").read_text()
    section = text.split("## Several machines", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(\w*)\n(.*?)```", section, flags=re.S)


def _join_options() -> set[str]:
    commands = next(action for action in parser()._actions if action.dest == "command")
    join = commands.choices["join"]  # type: ignore[index]
    return {option for action in join._actions for option in action.option_strings}


def test_the_params_block_is_valid_params() -> None:
    params = next(yaml.safe_load(code) for language, code in _blocks() if language == "yaml"
                  and code.startswith("cnn:"))
    section = project_params({"cnn": params["cnn"]}).model_params("cnn")
    assert (section.processes, section.coordinator) == (2, "node0:7070")


def test_every_script_parses_and_uses_only_options_that_exist() -> None:
    scripts = [code for language, code in _blocks() if language == "bash"]
    manifests = [document for language, code in _blocks() if language == "yaml"
                 and "apiVersion" in code for document in yaml.safe_load_all(code)]
    assert [manifest["kind"] for manifest in manifests] == ["Service", "Job"]
    job = manifests[1]["spec"]
    assert job["completionMode"] == "Indexed" and job["completions"] == job["parallelism"]
    container = job["template"]["spec"]["containers"][0]
    scripts += container["args"]
    assert len(scripts) == 4  # by hand x 2, SLURM, the Job's pods
    for script in scripts:
        checked = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True)
        assert checked.returncode == 0, checked.stderr + script
    used = {option for script in scripts for line in script.splitlines()
            if "nnlab join" in line for option in re.findall(r"--[a-z-]+", line)}
    assert used and used <= _join_options(), used - _join_options()
