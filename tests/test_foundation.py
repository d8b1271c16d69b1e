"""The repository foundation: setup.py, the command-line wrappers, the benchmark and model table, thread setup
and the training scripts. Command-line tools are run as subprocesses from the repo root."""
import importlib.util
import json
import os
import socket
import subprocess
import sys

import pytest

from conftest import load_setup

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 300


def run(args, env=None, timeout=TIMEOUT, **kwargs):
    """Run `python args...` in the repo root; CompletedProcess with text output."""
    return subprocess.run([sys.executable] + list(args), cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, **kwargs)


def pinned_lines():
    with open(os.path.join(ROOT, "requirements.txt"), encoding="utf-8") as f:
        return [ln.strip() for ln in f if ln.strip() and not ln.lstrip().startswith("#")]


# --- training scripts -----------------------------------------------------------------------------------

@pytest.mark.parametrize("script", ["train_cifar.py", "train_imagenet.py", "train_seg.py"])
def test_training_scripts_are_real_and_executable(script):
    assert os.access(os.path.join(ROOT, script), os.X_OK), f"{script} is not executable"
    res = run([script, "--help"], timeout=60)
    assert res.returncode == 0 and "usage" in res.stdout, res


# --- setup.py -------------------------------------------------------------------------------------------

def test_setup_requirements_are_ranges_the_lock_satisfies():
    """setup.py asks for ranges (docs/install.md); requirements.txt, the exact lock, satisfies every one
    of them and of the extras."""
    from packaging.requirements import Requirement
    setup = load_setup()
    pins = dict(p.split("==") for p in pinned_lines())
    pins = {k.lower(): v for k, v in pins.items()}
    reqs = setup.requirements() + [r for extra in setup.EXTRAS.values() for r in extra]
    assert setup.requirements()[0] == "mxnet>=1.9.1,<2"
    assert not any("==" in r for r in setup.requirements() if not r.startswith("gluoncv"))
    assert "numpy>=1.23,<1.24" in setup.requirements()  # mxnet 1.9.1 does not import with numpy >= 1.24
    for r in map(Requirement, reqs):
        assert r.name.lower() in pins and r.specifier.contains(pins[r.name.lower()]), (str(r), pins)
    assert {"pytest", "scikit-learn", "pycocotools"} <= {Requirement(r).name for r in setup.EXTRAS["test"]}
    assert not {"pytest", "scikit-learn", "pycocotools", "certifi"} & {
        Requirement(r).name for r in setup.requirements()}


@pytest.mark.parametrize("variant", ["mxnet-cu112", "mxnet-cu112==1.9.1"])
def test_setup_mxnet_variant_replaces_only_the_mxnet_requirement(variant):
    setup = load_setup()
    reqs = setup.requirements(variant=variant)
    want = "mxnet-cu112==1.9.1" if "==" in variant else "mxnet-cu112>=1.9.1,<2"
    assert reqs == [want] + setup.requirements()[1:]


def test_setup_metadata_end_to_end(tmp_path):
    """Running setup.py itself (egg_info into tmp_path) gives the ranges, the extras, the GPU swap,
    Python 3.11, both packages, the three scripts and the aff-* commands."""
    def egg_info(variant):
        out = tmp_path / (variant or "cpu")
        out.mkdir()
        env = {k: v for k, v in os.environ.items() if k != "AFF_MXNET_VARIANT"}
        if variant:
            env["AFF_MXNET_VARIANT"] = variant
        res = run(["setup.py", "-q", "egg_info", "--egg-base", str(out)], env=env, timeout=120)
        assert res.returncode == 0, res.stderr
        (info,) = out.glob("*.egg-info")
        return info

    from packaging.requirements import Requirement

    def normal(reqs):  # setuptools writes the specifiers sorted: mxnet<2,>=1.9.1
        return [str(Requirement(r)) for r in reqs]
    setup = load_setup()
    cpu = egg_info(None)
    requires = (cpu / "requires.txt").read_text()
    assert requires.split("[")[0].split() == normal(setup.requirements())
    assert "[demo]\nscikit-learn" in requires and "[test]\npytest" in requires
    assert "Requires-Python: >=3.11,<3.12" in (cpu / "PKG-INFO").read_text()
    assert "Name: openaff-gluon" in (cpu / "PKG-INFO").read_text()
    assert set((cpu / "top_level.txt").read_text().split()) == {
        "net", "utils", "train_cifar", "train_imagenet", "train_seg"}
    commands = (cpu / "entry_points.txt").read_text()
    assert "aff-reproduce = utils.console:reproduce" in commands
    assert "aff-train-cifar = utils.console:train_cifar" in commands
    gpu = egg_info("mxnet-cu112")
    assert (gpu / "requires.txt").read_text().split()[0] == normal(["mxnet-cu112>=1.9.1,<2"])[0]


# --- utils.cli.run_main ---------------------------------------------------------------------------------

CLI_PROGRAM = """
import sys
from utils.cli import run_main
from net.errors import AFFError

def main(what):
    if what == "error":
        raise AFFError("checkpoint foo.params is missing; download it or pass --params")
    if what == "interrupt":
        raise KeyboardInterrupt
    if what == "usage":
        raise SystemExit(7)
    return int(what)

run_main(main, sys.argv[1])
"""


def test_run_main_turns_an_aff_error_into_one_line_and_exit_2():
    res = run(["-c", CLI_PROGRAM, "error"], timeout=120)
    assert res.returncode == 2
    assert res.stderr == "error: checkpoint foo.params is missing; download it or pass --params\n"
    assert "Traceback" not in res.stderr + res.stdout


@pytest.mark.parametrize("what, code, stderr", [("interrupt", 130, "interrupted\n"), ("usage", 7, ""),
                                                ("0", 0, ""), ("3", 3, "")])
def test_run_main_exit_codes(what, code, stderr):
    res = run(["-c", CLI_PROGRAM, what], timeout=120)
    assert (res.returncode, res.stderr) == (code, stderr)


# --- utils.models ---------------------------------------------------------------------------------------

def test_count_params_counts_all_and_trainable_elements():
    from utils.models import count_params, input_size  # noqa: F401 (utils before mxnet)
    from mxnet import gluon
    import mxnet as mx

    block = gluon.nn.HybridSequential()
    block.add(gluon.nn.Dense(5, in_units=3), gluon.nn.BatchNorm(in_channels=5))
    block.initialize()
    block(mx.nd.zeros((2, 3)))
    # Dense 3*5 + 5; BatchNorm gamma, beta (trainable) + running mean/var (grad_req null) of 5 each
    assert count_params(block) == (6, 20 + 20, 20 + 10)
    block[0].weight.grad_req = "null"
    assert count_params(block) == (6, 40, 15)


def test_input_size_rule():
    from utils.models import input_size

    class WithSize:
        input_size = 64
    assert input_size("cifar_aff_resnet32") == 32
    assert input_size("imagenet_aff_resnet50") == 224
    assert input_size("imagenet_aff_resnet50", WithSize()) == 64
    assert input_size("cifar_aff_resnet32", object()) == 32


def test_models_table_gives_the_official_aff_resnet32_counts():
    res = run(["-m", "utils.models", "cifar_aff_resnet32"])
    assert res.returncode == 0, res.stderr
    rows = [ln for ln in res.stdout.splitlines() if ln.startswith("cifar_aff_resnet32 ")]
    assert rows, res.stdout
    # docs/official-code.md §2.7: 523 tensors, total 7,917,456, trainable 7,897,156 (100 classes)
    for row in rows:
        assert row.split()[1:7] == ["100", "523", "7.92", "7,917,456", "7.90", "7,897,156"], row


def test_models_table_classes_option_and_markdown():
    res = run(["-m", "utils.models", "cifar_aff_resnet32", "--classes", "10", "--markdown"])
    assert res.returncode == 0, res.stderr
    # docs/official-code.md §2.7: a 10-class head has 90 * (256 + 1) = 23,130 fewer parameters, all trainable
    assert "| cifar_aff_resnet32 | 10 | 523 | 7.89 | 7,894,326 | 7.87 | 7,874,026 |" in res.stdout, res.stdout


def test_models_unknown_name_is_one_error_line():
    res = run(["-m", "utils.models", "cifar_aff_resnet32", "no_such_net"], timeout=120)
    assert res.returncode == 2
    assert res.stderr.startswith("error: unknown model 'no_such_net'") and res.stderr.count("\n") == 1
    assert res.stdout == ""  # checked before anything is built


# --- utils.bench ----------------------------------------------------------------------------------------

BENCH_MODEL = "cifar_add_resnet20_b1"


def test_bench_writes_a_json_record(tmp_path):
    out = tmp_path / "bench.json"
    res = run(["-m", "utils.bench", "--model", BENCH_MODEL, "--batch-size", "2", "--warmup", "1",
               "--windows", "2", "--iters", "1", "--json", str(out)])
    assert res.returncode == 0, res.stderr
    rec = json.loads(out.read_text())
    assert (rec["model"], rec["batch_size"], rec["input_size"], rec["hybridize"]) == (BENCH_MODEL, 2, 32, True)
    for phase in ("train", "inference"):
        assert rec[phase]["images_per_s"] > 0
        assert len(rec[phase]["window_seconds"]) == 2 and min(rec[phase]["window_seconds"]) > 0
        assert f"{rec[phase]['images_per_s']:9.1f}" in res.stdout
    assert rec["threads"] == os.environ.get("OMP_NUM_THREADS", str(len(os.sched_getaffinity(0))))
    assert rec["mxnet_version"] == "1.9.1" and isinstance(rec["mkldnn"], bool)
    assert rec["machine"]["cpu_model"] and rec["machine"]["usable_cores"] >= 1
    # a process that loaded MXNet and trained holds more than 50 MiB, and less than the machine has
    assert 0.05 < rec["peak_rss_gib_after_train"] < rec["machine"]["mem_total_gib"]
    assert f"peak memory (RSS) after the training windows: {rec['peak_rss_gib_after_train']:.2f} GiB" in res.stdout
    host = socket.gethostname()
    if len(host) >= 4:
        assert host not in out.read_text()


def test_bench_train_step_handles_segmentation_and_tuple_outputs():
    """(N, C, H, W) outputs get (N, H, W) labels; every output of a tuple gets a loss; the step trains."""
    from utils.bench import train_step_fn
    import mxnet as mx
    from mxnet import gluon

    class TwoHeads(gluon.HybridBlock):
        def __init__(self):
            super().__init__()
            self.seg = gluon.nn.Conv2D(3, 1, in_channels=2)
            self.cls = gluon.nn.Dense(3, in_units=2 * 4 * 4)

        def hybrid_forward(self, F, x):
            return self.seg(x), self.cls(x)

    block = TwoHeads()
    block.initialize()
    block.hybridize(static_alloc=True, static_shape=True)
    before = {k: p.data().copy() for k, p in block.collect_params().items()}
    step = train_step_fn(block, mx.nd.random.uniform(shape=(2, 2, 4, 4)), classes=3)
    step()
    step()
    mx.nd.waitall()
    for k, p in block.collect_params().items():
        assert (p.data() - before[k]).abs().sum().asscalar() > 0, k


def test_bench_rejects_bad_arguments():
    res = run(["-m", "utils.bench", "--model", BENCH_MODEL, "--iters", "0"], timeout=120)
    assert res.returncode == 2 and "--iters" in res.stderr and "Traceback" not in res.stderr
    res = run(["-m", "utils.bench", "--model", "no_such_net"], timeout=120)
    assert res.returncode == 2 and res.stderr.startswith("error: unknown model 'no_such_net'")


# --- threads --------------------------------------------------------------------------------------------

THREADS_PROGRAM = "import utils, mxnet, os; print(os.environ.get('OMP_NUM_THREADS'))"


def test_importing_utils_sets_omp_threads_to_the_idle_usable_cores():
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    program = THREADS_PROGRAM + "; import net._env as E; print(E.THREADS_NOTE)"
    res = run(["-c", program], env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    threads, note = res.stdout.strip().splitlines()
    assert 1 <= int(threads) <= len(os.sched_getaffinity(0))
    assert note.startswith(("OMP_NUM_THREADS=%s chosen" % threads,
                            "WARNING: OMP_NUM_THREADS=%s chosen" % threads)), note


def test_the_thread_choice_follows_the_idle_cores():
    from net._env import choose_threads, idle_cores
    assert choose_threads(2, 1.98) == 2 and choose_threads(2, None) == 2   # quiet / unknown
    assert choose_threads(2, 1.0) == 1 and choose_threads(2, 0.02) == 1    # one or two busy
    assert choose_threads(8, 5.8) == 6 and choose_threads(1, 0.0) == 1
    idle = idle_cores(0.05)
    assert idle is None or 0 <= idle <= (os.cpu_count() or 1) + 0.01


def test_a_preset_omp_threads_is_kept():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = run(["-c", THREADS_PROGRAM], env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "1"


# --- the command lines explain themselves ---------------------------------------------------------

@pytest.mark.parametrize("script", ["train_cifar", "train_imagenet", "train_seg"])
def test_every_option_of_the_scripts_has_help(script):
    import argparse
    import importlib
    parser = importlib.import_module(script).build_parser()
    options = [a for a in parser._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]
    assert len(options) > 25
    assert not [a.option_strings for a in options if not a.help]
    if script != "train_seg":   # official open-aff options and our additions are grouped apart
        titles = [g.title for g in parser._action_groups]
        assert any(t.startswith("open-aff HEAD options") for t in titles)
        assert "additions of this repository" in titles


@pytest.mark.parametrize("script", ["train_cifar", "train_imagenet"])
def test_the_official_default_askc_type_says_which_to_give(script, capsys):
    import importlib
    from utils.cli import run_main
    with pytest.raises(SystemExit) as e:
        run_main(importlib.import_module(script).main, ["--model", "resnet", "--num-gpus" if
                                                        script == "train_imagenet" else "--gpus",
                                                        "0"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.strip().splitlines()) == 1 and len(err) < 300, err
    assert "needs --askc-type" in err and "ASKCFuse (AFF)" in err


class _Parsed(Exception):
    pass


@pytest.mark.parametrize("tool", ["compare", "reproduce", "gradcam", "bench", "bench_profile",
                                  "launch", "models", "flops"])
def test_every_option_of_the_tools_has_help(tool, monkeypatch):
    import argparse
    import importlib

    def grab(self, args=None, namespace=None):
        raise _Parsed(self)
    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", grab)
    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", grab)
    with pytest.raises(_Parsed) as got:
        importlib.import_module("utils." + tool).main([])
    parser = got.value.args[0]
    options = [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]
    assert options and not [a.option_strings or a.dest for a in options if not a.help]


def test_the_model_table_reports_progress_on_stderr(capsys):
    from utils import models
    names = ['cifar_add_resnet20_b1', 'cifar_aff_resnet20_b1', 'cifar_iaff_resnet20_b1',
             'cifar_msgau_resnet20_b1', 'cifar_globalglobal_resnet20_b1', 'cifar_se_resnet20_b1']
    assert models.main(names) == 0
    captured = capsys.readouterr()
    assert captured.err.splitlines() == ['[%d/6] %s' % (k + 1, n) for k, n in enumerate(names)]
    assert all(n in captured.out for n in names)
