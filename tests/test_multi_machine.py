"""Training on more than one machine: tools/dist_train.sh with NNODES / NODE_RANK /
MASTER_ADDR / PORT (as mmdet's), and tools/slurm_train.sh (as OpenMMLab's).

The machines are simulated on this one: two launcher invocations (one process each) that
meet at 127.0.0.1 over gloo, and a stand-in ``srun`` that starts the tasks with Slurm's
variables. A tiny RetinaNet-EMOv2-1M (4 demo images at 96 px, 2 per process) trains two
epochs; emo_mm.ParameterSyncCheckHook hashes every rank's parameters after training.
"""
import json
import os
import os.path as osp
import socket
import stat
import subprocess
import sys

import pytest

from emo_mm.demo.data import make_coco_shapes
from helpers import REPO

DEMO = osp.join(REPO, 'configs', 'demo', 'retinanet_emov2_1m_demo.py')
PY = sys.executable


@pytest.fixture(scope='module')
def env(tmp_path_factory):
    cache = str(tmp_path_factory.mktemp('stamps'))
    return dict(os.environ, OMP_NUM_THREADS='1', PYTHON=PY, EMO_MM_CACHE_DIR=cache,
                PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''))


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    root = make_coco_shapes(str(tmp_path_factory.mktemp('coco') / 'shapes'), num_train=4,
                            num_val=2)
    path = tmp_path_factory.mktemp('cfg') / 'tiny.py'
    path.write_text('\n'.join([
        f'_base_ = [{DEMO!r}]',
        f'data_root = {root + "/"!r}',
        # from scratch, no pretrained file: this tests the launchers, not learning
        'model = dict(backbone=dict(drop_path_rate=0., init_cfg=None), neck=dict(out_channels=32),'
        ' bbox_head=dict(in_channels=32, feat_channels=32, stacked_convs=1))',
        'train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False, '
        'dataset=dict(data_root=data_root, pipeline=[dict(type="LoadImageFromFile"), '
        'dict(type="LoadAnnotations", with_bbox=True), '
        'dict(type="Resize", scale=(96, 96), keep_ratio=True), dict(type="PackDetInputs")]))',
        'val_dataloader = None', 'val_cfg = None', 'val_evaluator = None',
        'test_dataloader = None', 'test_cfg = None', 'test_evaluator = None',
        'randomness = dict(seed=0)',
        'custom_hooks = [dict(type="emo_mm.ParameterSyncCheckHook")]',
        'default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=1))',
        'train_cfg = dict(max_epochs=2, val_interval=100)']) + '\n')
    return str(path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('', 0))
        return s.getsockname()[1]


def _check_synchronised(work_dir, log):
    with open(osp.join(work_dir, 'param_sync.json')) as f:
        sync = json.load(f)
    assert sync['world_size'] == 2 and len(sync['hashes']) == 2, sync
    assert len(set(sync['hashes'])) == 1, sync  # both ranks hold the same model
    assert 'Parameters identical on all 2 ranks' in log
    # 4 images / (2 ranks x 2 per rank) = 1 iteration per epoch, 2 epochs
    assert osp.isfile(osp.join(work_dir, 'epoch_2.pth'))
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        assert f.read().strip().endswith('epoch_2.pth')


@pytest.mark.slow  # two training processes through torchrun
def test_two_nodes_train_the_same_model(tiny, env, tmp_path):
    """NNODES=2 on localhost: node 0 and node 1 each start one process (gloo); with
    --auto-scale-lr the learning rate follows the global batch."""
    work_dir = str(tmp_path / 'two_nodes')
    common = dict(env, NNODES='2', MASTER_ADDR='127.0.0.1', PORT=str(_free_port()))
    command = ['bash', 'tools/dist_train.sh', tiny, '1', '--work-dir', work_dir,
               '--auto-scale-lr']
    nodes = [subprocess.Popen(command, cwd=REPO, env=dict(common, NODE_RANK=str(rank)),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for rank in (0, 1)]
    logs = [node.communicate(timeout=900)[0] for node in nodes]
    for rank, (node, log) in enumerate(zip(nodes, logs)):
        assert node.returncode == 0, f'node {rank}:\n{log[-4000:]}'
    _check_synchronised(work_dir, logs[0])
    # the global batch is machines x processes x batch per process: 2 x 1 x 2
    assert ('LR is set based on batch size of 16 and the current batch size is 4. Scaling '
            'the original LR by 0.25.') in logs[0]


def test_launcher_variables_are_checked(tiny, env):
    for extra, message in (
            (dict(NNODES='2', NODE_RANK='2'), 'error: NODE_RANK=2 must be 0 .. 1'),
            (dict(NNODES='two'), 'error: NNODES=two is not a number of machines'),
            (dict(PORT='70000'), 'error: PORT=70000 is not a TCP port')):
        result = subprocess.run(['bash', 'tools/dist_train.sh', tiny, '1'], cwd=REPO,
                                env=dict(env, **extra), capture_output=True, text=True)
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith(message), result.stderr
    result = subprocess.run(['bash', 'tools/dist_test.sh', tiny, 'x.pth', '1'], cwd=REPO,
                            env=dict(env, NNODES='2', NODE_RANK='5'), capture_output=True,
                            text=True)
    assert result.returncode == 2 and result.stderr.startswith('error: NODE_RANK=5 must be')
    result = subprocess.run(['bash', 'tools/slurm_train.sh', 'part', 'job', tiny], cwd=REPO,
                            env=env, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == ('error: give the partition, a job name, the '
                                              'config and the work dir.')


def test_slurm_test_passes_openmmlab_arguments(tiny, env, tmp_path):
    """tools/slurm_test.sh: srun's options and the tools/test.py command (srun stand-in)."""
    srun = tmp_path / 'srun'
    srun.write_text('#!/usr/bin/env bash\necho "$@" > "$FAKE_SRUN_LOG"\n')
    srun.chmod(0o755)
    log = tmp_path / 'args.txt'
    run_env = dict(env, PATH=f'{tmp_path}{os.pathsep}{env["PATH"]}', FAKE_SRUN_LOG=str(log),
                   GPUS='16', GPUS_PER_NODE='8', CPUS_PER_TASK='4')
    result = subprocess.run(['bash', 'tools/slurm_test.sh', 'gpu', 'eval', tiny, 'e.pth',
                             '--out', 'p.pkl'], cwd=REPO, env=run_env, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    assert log.read_text().split() == [
        '-p', 'gpu', '--job-name=eval', '--ntasks=16', '--gres=gpu:8', '--ntasks-per-node=8',
        '--cpus-per-task=4', '--kill-on-bad-exit=1', PY, '-u',
        osp.join(REPO, 'tools', 'test.py'), tiny, 'e.pth', '--launcher', 'slurm', '--out',
        'p.pkl']


def _fake_slurm(folder) -> str:
    """``srun`` that starts --ntasks copies of the command with Slurm's variables (and logs
    its arguments), and ``scontrol show hostnames`` naming this machine."""
    srun = folder / 'srun'
    srun.write_text(f'''#!{PY}
import os, subprocess, sys
args = sys.argv[1:]
with open(os.environ['FAKE_SRUN_LOG'], 'w') as f:
    f.write(' '.join(args))
options = {{}}
while args[0].startswith('-'):
    if args[0] in ('-p', '-J'):
        options[args[0]] = args[1]
        args = args[2:]
        continue
    key, _, value = args[0].partition('=')
    options[key] = value
    args = args[1:]
tasks, per_node = int(options['--ntasks']), int(options['--ntasks-per-node'])
procs = [subprocess.Popen(args, env=dict(
    os.environ, SLURM_PROCID=str(rank), SLURM_NTASKS=str(tasks),
    SLURM_LOCALID=str(rank % per_node), SLURM_NODELIST='node[0-1]'))
    for rank in range(tasks)]
sys.exit(max(p.wait() for p in procs))
''')
    scontrol = folder / 'scontrol'
    scontrol.write_text('#!/usr/bin/env bash\necho 127.0.0.1\necho 127.0.0.2\n')
    for path in (srun, scontrol):
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(folder)


@pytest.mark.slow  # two training processes
@pytest.mark.extended
def test_slurm_train_two_cpu_tasks(tiny, env, tmp_path):
    """tools/slurm_train.sh: srun gets OpenMMLab's options, every task runs tools/train.py
    --launcher slurm, and the tasks (one per "machine") train one model over gloo."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    srun_log = str(tmp_path / 'srun_args.txt')
    work_dir = str(tmp_path / 'slurm')
    run_env = dict(env, PATH=_fake_slurm(bin_dir) + os.pathsep + env['PATH'],
                   FAKE_SRUN_LOG=srun_log, GPUS='2', GPUS_PER_NODE='0', CPUS_PER_TASK='1',
                   MASTER_PORT=str(_free_port()), SRUN_ARGS='--quotatype=auto')
    result = subprocess.run(['bash', 'tools/slurm_train.sh', 'cpu', 'emo_tiny', tiny, work_dir],
                            cwd=REPO, env=run_env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with open(srun_log) as f:
        srun_args = f.read()
    assert srun_args.startswith('-p cpu --job-name=emo_tiny --ntasks=2 --ntasks-per-node=1 '
                                '--cpus-per-task=1 --kill-on-bad-exit=1 --quotatype=auto ')
    assert f'tools/train.py {tiny} --work-dir {work_dir} --launcher slurm' in srun_args
    _check_synchronised(work_dir, result.stdout + result.stderr)


def test_the_scaling_table_of_the_docs_is_the_configs():
    """docs/training.md: batch per process and auto_scale_lr.base_batch_size per config."""
    from emo_mm.apis import load_config
    with open(osp.join(REPO, 'docs', 'training.md')) as f:
        text = f.read()
    table = text.split('| config | batch per process |', 1)[1].split('\n\n', 1)[0]
    rows = [line.split('|')[1:-1] for line in table.splitlines()[2:]]
    assert len(rows) >= 10
    for name, batch, base, run in rows:
        cfg = load_config(name.strip().strip('`'))
        assert int(batch) == cfg.train_dataloader.batch_size, name
        assert int(base) == cfg.auto_scale_lr.base_batch_size, name
        gpus = int(run.split()[0]) if 'GPUs x' in run else 1
        assert gpus * int(batch) == int(base), name  # the authors' global batch
