"""The ``slicercad`` command line: help without heavy imports, defaults and task names shown,
a clear message when the fuzz extra is missing."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="200")
ENV.pop("SLICERCAD_PROGRESS", None)
HEAVY = ("torch", "monai", "sklearn", "safetensors", "matplotlib", "psutil")
BLOCKED = textwrap.dedent("""
    import sys

    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in {blocked!r}:
                raise ModuleNotFoundError(f"blocked import of {{name}}", name=name)

    sys.meta_path.insert(0, Blocker())
    from {module} import main
    sys.exit(main(sys.argv[1:]))
""")


def _slicercad(*args, blocked=HEAVY, module="slicercad.cli"):
    """Run ``main(args)`` of ``module`` in a fresh interpreter where ``blocked`` packages cannot load."""
    code = BLOCKED.format(blocked=tuple(blocked), module=module)
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=ENV,
                          cwd=ROOT, timeout=120)


def _line(text, start):
    return next(line for line in text.splitlines() if line.strip().startswith(start))


def test_top_level_help_lists_every_command_without_heavy_imports():
    from slicercad.cli import COMMANDS

    done = _slicercad("--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: slicercad")
    assert all(name in done.stdout for name in COMMANDS)


@pytest.mark.parametrize("command", [["phantom"], ["scan"], ["audit"], ["train"], ["evaluate"], ["fuzz"], ["liver"],
                                     ["liver", "classify"], ["liver", "reproduce"]])
def test_command_help_without_heavy_imports(command):
    done = _slicercad(*command, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: slicercad {' '.join(command)}")


def test_help_shows_defaults_of_commands_and_nested_commands():
    assert "(default: 20)" in _line(_slicercad("train", "--help").stdout, "--epochs")
    assert "(default: 400)" in _line(_slicercad("liver", "reproduce", "--help").stdout, "--n-train")
    assert "(default: out/fuzz)" in _line(_slicercad("fuzz", "--help").stdout, "--out")


def test_train_help_and_unknown_task_list_the_registered_tasks():
    from slicercad.engine.tasks import task_names
    from slicercad.engine.train_cli import TASK_NAMES

    assert sorted(TASK_NAMES) == task_names()
    usage = _slicercad("train", "--help").stdout
    assert all(name in usage for name in TASK_NAMES)
    done = _slicercad("train", "no_such_task", "--out", "unused")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "unknown task 'no_such_task'" in done.stderr and all(name in done.stderr for name in TASK_NAMES)


@pytest.mark.parametrize("module", ["slicercad.cli", "slicercad.fuzz.cli"])
def test_fuzz_without_hypothesis_says_which_extra_to_install(module, tmp_path):
    args = (["fuzz"] if module == "slicercad.cli" else []) + ["--inputs", "1", "--out", str(tmp_path)]
    done = _slicercad(*args, blocked=("hypothesis",), module=module)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert 'pip install "slicercad[test]"' in done.stderr and "hypothesis" in done.stderr
    assert not any(tmp_path.iterdir())
