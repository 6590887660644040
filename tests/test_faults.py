"""Fault injection: kills, interrupts, damaged and hostile checkpoints, bad samples, bad input.

Training runs are tiny (RetinaNet-EMOv2-1M with a 32-channel neck and head, 4 demo images at
96 px, batch 2, 2 iterations per epoch, no validation) and go through the real
``tools/train.py`` / ``tools/test.py`` in subprocesses (marked slow); the data cases run
in-process. Every case asserts its outcome.
"""
import hashlib
import os
import os.path as osp
import shutil
import signal
import socket
import subprocess
import sys
import time

import cv2
import pytest
import torch

from emo_mm.checks.data import DataError, check_data, set_data_root
from emo_mm.demo.data import make_ade20k_regions, make_coco_shapes, make_motion_videos
from emo_mm.engine import prepare_train_config
from emo_mm.engine.errors import UserError
from emo_mm.models.weights import CheckpointError, UnsafeCheckpointError
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
    root = make_coco_shapes(osp.join(REPO, 'data', 'demo_coco'))
    path = tmp_path_factory.mktemp('cfg') / 'tiny.py'
    path.write_text('\n'.join([
        f'_base_ = [{DEMO!r}]',
        f'data_root = {root + "/"!r}',
        'model = dict(backbone=dict(drop_path_rate=0., init_cfg=None), neck=dict(out_channels=32),'
        ' bbox_head=dict(in_channels=32, feat_channels=32, stacked_convs=1))',
        'train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False, '
        'dataset=dict(data_root=data_root, indices=4, pipeline=[dict(type="LoadImageFromFile"), '
        'dict(type="LoadAnnotations", with_bbox=True), '
        'dict(type="Resize", scale=(96, 96), keep_ratio=True), dict(type="PackDetInputs")]))',
        'val_dataloader = None', 'val_cfg = None', 'val_evaluator = None',
        'test_dataloader = None', 'test_cfg = None', 'test_evaluator = None',
        'randomness = dict(seed=0)',
        'default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=1))',
        'train_cfg = dict(max_epochs=2, val_interval=100)']) + '\n')
    return str(path)


def _run(args, env, expect=0, timeout=600):
    result = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == expect, (result.returncode, result.stdout[-2000:],
                                         result.stderr[-3000:])
    return result


def _train(tiny, work_dir, env, *extra, expect=0, fault=None):
    prefix = [PY, 'tests/fault_injection.py', fault] if fault else [PY]
    return _run(prefix + ['tools/train.py', tiny, '--work-dir', str(work_dir), *extra], env,
                expect)


def _error_lines(result):
    """stderr of a failed tool: one or two lines starting with 'error:', no traceback."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert 'Traceback' not in result.stderr, result.stderr[-3000:]
    assert 1 <= len(lines) <= 2 and lines[0].startswith('error: '), lines
    return ' '.join(lines)


@pytest.fixture(scope='module')
def straight(tiny, env, tmp_path_factory):
    """The reference: two epochs without a fault."""
    work_dir = tmp_path_factory.mktemp('straight')
    _train(tiny, work_dir, env)
    return work_dir


def _same_training_state(a_path, b_path):
    """Weights, optimizer state, iteration, epoch and learning rate agree."""
    a = torch.load(a_path, weights_only=True)  # emo_mm's checkpoints need nothing more
    b = torch.load(b_path, weights_only=True)
    assert (a['meta']['epoch'], a['meta']['iter']) == (b['meta']['epoch'], b['meta']['iter'])
    for key, value in a['state_dict'].items():
        torch.testing.assert_close(b['state_dict'][key], value, rtol=1e-5, atol=1e-7, msg=key)
    state_a, state_b = a['optimizer']['state'], b['optimizer']['state']
    assert state_a.keys() == state_b.keys() and state_a
    for key in state_a:
        for name in ('exp_avg', 'exp_avg_sq'):
            torch.testing.assert_close(state_b[key][name], state_a[key][name], rtol=1e-4,
                                       atol=1e-9)
    lr_a = [g['lr'] for g in a['optimizer']['param_groups']]
    lr_b = [g['lr'] for g in b['optimizer']['param_groups']]
    assert lr_a == pytest.approx(lr_b, rel=1e-9)
    assert a['param_schedulers'] == b['param_schedulers']


def _digest(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


# ---------------------------------------------------------------------------------------
# Kills and interrupts.
# ---------------------------------------------------------------------------------------
@pytest.mark.slow  # subprocess runs of the tools
@pytest.mark.extended
def test_kill_during_training_then_resume(tiny, env, straight, tmp_path):
    work_dir = tmp_path / 'killed'
    proc = subprocess.Popen([PY, 'tools/train.py', tiny, '--work-dir', str(work_dir)], cwd=REPO,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while not (work_dir / 'last_checkpoint').exists():  # epoch 1 saved, epoch 2 training
            assert proc.poll() is None and time.time() < deadline, 'training ended early'
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (work_dir / 'epoch_2.pth').exists()
    assert torch.load(work_dir / 'epoch_1.pth', weights_only=True)['meta']['iter'] == 2
    log = _train(tiny, work_dir, env, '--resume').stdout
    assert 'resumed epoch: 1, iter: 2' in log
    _same_training_state(straight / 'epoch_2.pth', work_dir / 'epoch_2.pth')


@pytest.mark.slow  # subprocess runs of the tools
@pytest.mark.extended
def test_kill_during_save_keeps_previous_checkpoint(tiny, env, straight, tmp_path):
    work_dir = tmp_path / 'killed_saving'
    proc = subprocess.run([PY, 'tests/fault_injection.py', 'kill-during-write', 'tools/train.py',
                           tiny, '--work-dir', str(work_dir)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert not (work_dir / 'epoch_2.pth').exists()  # no partial file under a final name
    partial = work_dir / '.epoch_2.pth.partial'
    assert partial.exists() and partial.stat().st_size < (work_dir / 'epoch_1.pth').stat().st_size
    log = _train(tiny, work_dir, env, '--resume').stdout
    assert 'resumed epoch: 1, iter: 2' in log
    assert not partial.exists()
    _same_training_state(straight / 'epoch_2.pth', work_dir / 'epoch_2.pth')


@pytest.mark.slow  # subprocess runs of the tools
@pytest.mark.parametrize('fault', ['sigint-in-config', 'sigint-during-write'])
@pytest.mark.extended
def test_ctrl_c_during_save(tiny, env, tmp_path, fault):
    work_dir = tmp_path / 'interrupted'
    result = _train(tiny, work_dir, env, expect=130, fault=fault)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert 'Traceback' not in result.stderr and 'SyntaxError' not in result.stderr
    saving = work_dir / 'epoch_2.pth'
    assert len(lines) == 1 and lines[0].startswith(f'Interrupted while saving {saving}. ')
    assert f'Checkpoints saved so far in {work_dir} are intact' in lines[0]
    assert not (work_dir / 'epoch_2.pth').exists()
    assert not any(n.endswith('.partial') for n in os.listdir(work_dir))
    torch.load(work_dir / 'epoch_1.pth', weights_only=True)  # intact


# ---------------------------------------------------------------------------------------
# Damaged checkpoints, resume and work-dir rules.
# ---------------------------------------------------------------------------------------
@pytest.mark.slow  # subprocess runs of the tools
@pytest.mark.extended
def test_truncated_latest_checkpoint(tiny, env, straight, tmp_path):
    work_dir = tmp_path / 'truncated'
    shutil.copytree(straight, work_dir)
    latest = work_dir / 'epoch_2.pth'
    latest.write_bytes(latest.read_bytes()[:latest.stat().st_size // 3])
    result = _run([PY, 'tools/test.py', tiny, str(latest)], env, expect=2)
    message = _error_lines(result)
    assert f'{latest} is not a readable PyTorch checkpoint: corrupt or truncated' in message
    assert f'Earlier checkpoints there: {work_dir / "epoch_1.pth"}' in message
    log = _train(tiny, work_dir, env, '--resume')
    assert f'{latest} is not a readable PyTorch checkpoint' in log.stdout + log.stderr
    assert (f'Resuming from the previous good checkpoint {work_dir / "epoch_1.pth"} instead.'
            in log.stdout + log.stderr)
    assert 'resumed epoch: 1, iter: 2' in log.stdout
    _same_training_state(straight / 'epoch_2.pth', latest)


@pytest.mark.slow  # subprocess runs of the tools
@pytest.mark.extended
def test_resume_with_nothing_to_resume(tiny, env, tmp_path):
    missing = tmp_path / 'typo'
    message = _error_lines(_train(tiny, missing, env, '--resume', expect=2))
    assert f'--resume: nothing to resume from, the work dir {missing} does not exist' in message
    missing.mkdir()
    message = _error_lines(_train(tiny, missing, env, '--resume', expect=2))
    assert 'holds no checkpoint' in message and '--resume auto' in message
    cfg = prepare_train_config(tiny, work_dir=str(missing), resume='auto')
    assert not cfg.resume and not cfg.get('load_from')  # auto: starts afresh


@pytest.mark.slow  # subprocess runs of the tools
@pytest.mark.extended
def test_rerun_into_used_work_dir(tiny, env, straight):
    before = {n: _digest(straight / n) for n in ('epoch_1.pth', 'epoch_2.pth')}
    message = _error_lines(_train(tiny, straight, env, expect=2))
    assert f'The work dir {straight} already holds checkpoints (epoch_2.pth, epoch_1.pth)' \
        in message
    assert '--resume' in message and '--overwrite' in message
    assert {n: _digest(straight / n) for n in before} == before
    cfg = prepare_train_config(tiny, work_dir=str(straight), overwrite=True)
    assert not cfg.get('resume')


# ---------------------------------------------------------------------------------------
# A checkpoint whose unpickling would run code.
# ---------------------------------------------------------------------------------------
class _Payload:

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


@pytest.fixture
def evil(tmp_path):
    marker = tmp_path / 'payload-ran'
    path = tmp_path / 'evil.pth'
    from emo_mm.models import EMOv2
    torch.save({'state_dict': EMOv2('1M').state_dict(), 'meta': {'epoch': 1, 'iter': 2},
                'x': _Payload(marker)}, path)
    return path, marker


@pytest.mark.slow  # subprocess runs of the tools
def test_payload_through_every_loading_path(tiny, env, evil, tmp_path):
    path, marker = evil
    trust = '--trust-checkpoint'
    message = _error_lines(_run([PY, 'tools/test.py', tiny, str(path)], env, expect=2))
    assert 'posix.system' in message and trust in message
    message = _error_lines(_train(tiny, tmp_path / 'w1', env, '--resume', str(path), expect=2))
    assert 'posix.system' in message and trust in message
    message = _error_lines(_train(tiny, tmp_path / 'w2', env, '--cfg-options',
                                  f'load_from={path}', expect=2))
    assert 'posix.system' in message and trust in message
    pretrained = _config_with(tmp_path, tiny, model="dict(backbone=dict(init_cfg=dict("
                              f"_delete_=True, type='Pretrained', checkpoint={str(path)!r})))")
    message = _error_lines(_train(pretrained, tmp_path / 'w3', env, expect=2))
    assert 'posix.system' in message and 'weights_only=False' in message
    with pytest.raises(UnsafeCheckpointError):
        from mmengine.runner import load_checkpoint

        from emo_mm.engine import install_checkpoint_loader
        from emo_mm.models import EMOv2
        install_checkpoint_loader()
        load_checkpoint(EMOv2('1M'), str(path))  # MMEngine's loader, as the inferencers use it
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the control: the payload is real
    assert marker.exists()


# ---------------------------------------------------------------------------------------
# A bad sample at the end of each kind of data set.
# ---------------------------------------------------------------------------------------
def _config_with(tmp_path, base, **entries):
    path = tmp_path / f'cfg_{len(list(tmp_path.iterdir()))}.py'
    lines = [f'_base_ = [{base!r}]'] + [f'{k} = {v}' for k, v in entries.items()]
    path.write_text('\n'.join(lines) + '\n')
    return str(path)


@pytest.fixture
def coco_copy(tmp_path):
    root = tmp_path / 'coco'
    shutil.copytree(make_coco_shapes(osp.join(REPO, 'data', 'demo_coco')), root)
    return root


def _coco_cfg(tmp_path, root):
    return _config_with(tmp_path, DEMO, data_root=repr(str(root) + '/'),
                        train_dataloader='dict(dataset=dict(data_root=data_root))',
                        val_dataloader='dict(dataset=dict(data_root=data_root))',
                        val_evaluator="dict(ann_file=data_root + "
                                      "'annotations/instances_val.json')",
                        model="dict(backbone=dict(init_cfg=None))")


def test_bad_coco_images_at_the_end(coco_copy, tmp_path, monkeypatch):
    monkeypatch.setenv('EMO_MM_CACHE_DIR', str(tmp_path / 'stamps'))
    cfg = _coco_cfg(tmp_path, coco_copy)
    images = sorted((coco_copy / 'train').iterdir())
    last = images[-1]
    last.write_bytes(b'')  # unreadable
    with pytest.raises(DataError, match=rf"image '{last}' cannot be decoded"):
        prepare_train_config(cfg, work_dir=str(tmp_path / 'w'))
    last.unlink()
    with pytest.raises(DataError, match=rf"image '{last}', listed in .*, does not exist"):
        prepare_train_config(cfg, work_dir=str(tmp_path / 'w'))
    cv2.imwrite(str(last), cv2.imread(str(images[0]))[:50, :70])
    with pytest.raises(DataError, match=r'is 70x50 but .* says \d+x\d+ \(width x height\)'):
        prepare_train_config(cfg, work_dir=str(tmp_path / 'w'))


def test_head_classes_must_match_the_data(coco_copy, tmp_path, monkeypatch):
    monkeypatch.setenv('EMO_MM_CACHE_DIR', str(tmp_path / 'stamps'))
    cfg = _coco_cfg(tmp_path, coco_copy)
    with pytest.raises(DataError) as err:
        prepare_train_config(cfg, work_dir=str(tmp_path / 'w'),
                             cfg_options={'model.bbox_head.num_classes': 3})
    assert str(err.value) == (
        'CocoDataset for train has 4 classes (circle, square, triangle, star) but '
        'model.bbox_head.num_classes=3. Set model.bbox_head.num_classes=4 (or --cfg-options), '
        'or fix metainfo.classes.')


def test_second_check_is_skipped_until_a_file_changes(coco_copy, tmp_path, monkeypatch):
    monkeypatch.setenv('EMO_MM_CACHE_DIR', str(tmp_path / 'stamps'))
    from emo_mm.apis import load_config
    cfg = load_config(_coco_cfg(tmp_path, coco_copy))
    lines = []
    check_data(cfg, ('train', ), report=lines.append)
    assert lines[-1].startswith('CocoDataset (train): ') and 'samples decoded' in lines[-1]
    check_data(cfg, ('train', ), report=lines.append)
    assert 'unchanged since it last passed, skipped' in lines[-1]
    image = sorted((coco_copy / 'train').iterdir())[-1]
    cv2.imwrite(str(image), cv2.imread(str(image))[:20])
    with pytest.raises(DataError, match='says'):
        check_data(cfg, ('train', ), report=lines.append)


@pytest.fixture
def ade_copy(tmp_path):
    src = make_ade20k_regions(osp.join(REPO, 'data', 'demo_ade20k'))
    root = tmp_path / 'ade'
    shutil.copytree(src, root)
    return root


def test_bad_label_maps_at_the_end(ade_copy, tmp_path, monkeypatch):
    monkeypatch.setenv('EMO_MM_CACHE_DIR', str(tmp_path / 'stamps'))
    cfg = _config_with(tmp_path, osp.join(REPO, 'configs', 'demo', 'deeplabv3_emov2_1m_demo.py'),
                       data_root=repr(str(ade_copy)),
                       train_dataloader='dict(dataset=dict(data_root=data_root))',
                       val_dataloader='dict(dataset=dict(data_root=data_root))',
                       model='dict(backbone=dict(init_cfg=None))')
    labels = sorted((ade_copy / 'annotations' / 'training').iterdir())
    assert len(labels) > 16  # the bad one lies beyond what a sample of 16 would see
    last = str(labels[-1])
    label = cv2.imread(last, cv2.IMREAD_UNCHANGED)
    cv2.imwrite(last, label[:-4])
    h, w = label.shape
    with pytest.raises(DataError, match=rf'{last}\' is {w}x{h - 4} but its image is {w}x{h}'):
        prepare_train_config(cfg, work_dir=str(tmp_path / 'w'))
    label[3, 3] = 77
    cv2.imwrite(last, label)
    with pytest.raises(DataError, match=r'holds values \[77\], outside the 5 classes'):
        prepare_train_config(cfg, work_dir=str(tmp_path / 'w'))


def test_pipeline_guard_names_the_file(ade_copy):
    from mmengine.registry import init_default_scope

    from emo_mm.checks.guard import SampleGuard
    init_default_scope('mmseg')
    guard = SampleGuard([dict(type='LoadImageFromFile'),
                         dict(type='LoadAnnotations'),
                         dict(type='RandomCrop', crop_size=(32, 32))], num_classes=5)
    image = sorted((ade_copy / 'images' / 'training').iterdir())[-1]
    label = ade_copy / 'annotations' / 'training' / (image.stem + '.png')
    sample = dict(img_path=str(image), seg_map_path=str(label), reduce_zero_label=True,
                  seg_fields=[], sample_idx=0)
    assert guard(dict(sample))['gt_seg_map'].shape == (32, 32)
    values = cv2.imread(str(label), cv2.IMREAD_UNCHANGED)
    values[0, 0] = 9  # class 8 after reduce_zero_label: beyond the 5 classes
    cv2.imwrite(str(label), values)
    with pytest.raises(DataError, match=rf'{label}: label values \[8\] are outside the 5'):
        guard(dict(sample))
    cv2.imwrite(str(label), values[:-2])
    with pytest.raises(DataError, match=rf'{label}: label map is \d+x\d+ but its image'):
        guard(dict(sample))
    image.write_bytes(b'garbage')
    with pytest.raises(DataError, match=rf'{image}: LoadImageFromFile failed'):
        guard(dict(sample))


def test_corrupt_video_at_the_end(tmp_path, monkeypatch):
    monkeypatch.setenv('EMO_MM_CACHE_DIR', str(tmp_path / 'stamps'))
    src = make_motion_videos(osp.join(REPO, 'data', 'demo_kinetics'))
    root = tmp_path / 'kinetics'
    shutil.copytree(src, root)
    listing = root / 'kinetics_train_list_videos.txt'
    lines = listing.read_text().split('\n')
    lines = [line for line in lines if line.strip()]
    assert len(lines) > 8  # beyond what a sample of 8 would decode
    last = root / 'videos_train' / lines[-1].split()[0]
    last.write_bytes(last.read_bytes()[:len(last.read_bytes()) // 3])
    cfg = _config_with(tmp_path, osp.join(REPO, 'configs', 'demo', 'vemo_demo.py'))
    from emo_mm.apis import load_config
    cfg = load_config(cfg)
    set_data_root(cfg, str(root))  # the video configs honour --data-root
    assert cfg.train_dataloader.dataset.ann_file == str(listing)
    with pytest.raises(DataError, match=rf"video '{last}' \(listed in {listing} line "
                       rf"{len(lines)}\) cannot be decoded"):
        check_data(cfg, ('train', ))


def test_video_check_opens_one_video_at_a_time(monkeypatch):
    """The check's threads never open two videos at once (decord's FFmpeg can abort when
    two threads build a decoder's tables together), but they do decode in parallel."""
    import threading
    import types
    state = dict(opening=0, most_opening=0, decoding=0, most_decoding=0)
    lock = threading.Lock()

    def track(key, step):
        with lock:
            state[key] += step
            state['most_' + key] = max(state['most_' + key], state[key])

    class Reader:
        def __init__(self, path, num_threads):
            track('opening', 1)
            time.sleep(0.02)
            track('opening', -1)

        def __len__(self):
            return 8

        def __getitem__(self, index):
            track('decoding', 1)
            time.sleep(0.05)
            track('decoding', -1)

    monkeypatch.setitem(sys.modules, 'decord', types.SimpleNamespace(VideoReader=Reader))
    from concurrent.futures import ThreadPoolExecutor

    from emo_mm.checks.data import count_video_frames
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(count_video_frames, [f'v{i}.mp4' for i in range(12)])) == [8] * 12
    assert state['most_opening'] == 1
    assert state['most_decoding'] > 1


def test_kinetics_data_root(tmp_path):
    from emo_mm.apis import load_config
    cfg = load_config(osp.join(REPO, 'configs', 'vemo_5m_k400.py'))
    set_data_root(cfg, '/data/k400')
    dataset = cfg.train_dataloader.dataset
    assert dataset.ann_file == '/data/k400/kinetics400_train_list_videos.txt'
    assert dataset.data_prefix.video == '/data/k400/videos_train'
    assert cfg.val_dataloader.dataset.data_prefix.video == '/data/k400/videos_val'


def test_custom_dataset_with_string_prefix(tmp_path, monkeypatch):
    monkeypatch.setenv('EMO_MM_CACHE_DIR', str(tmp_path / 'stamps'))
    from mmengine.config import Config
    root = tmp_path / 'flowers'
    for name in ('daisy', 'rose'):
        (root / 'train' / name).mkdir(parents=True)
        for i in range(3):
            cv2.imwrite(str(root / 'train' / name / f'{i}.jpg'), (torch.rand(8, 8, 3) * 255)
                        .byte().numpy())
    cfg = Config(dict(default_scope='mmpretrain', model=dict(head=dict(num_classes=2)),
                      train_dataloader=dict(dataset=dict(type='CustomDataset',
                                                         data_root=str(root),
                                                         data_prefix='train'))))
    check_data(cfg, ('train', ))  # mmpretrain accepts a string data_prefix
    bad = root / 'train' / 'rose' / '9.jpg'
    bad.write_bytes(b'not an image')
    with pytest.raises(DataError, match=rf"image '{bad}' cannot be decoded"):
        check_data(cfg, ('train', ))


# ---------------------------------------------------------------------------------------
# Messages of the command-line tools.
# ---------------------------------------------------------------------------------------
@pytest.mark.slow  # subprocess runs of the tools
def test_messages_without_traceback(tiny, env, tmp_path):
    result = _train(tiny, tmp_path / 'scope', env, '--cfg-options', 'model.backbone.type=EMOv2',
                    expect=2)
    assert "type='EMOv2' is not a mmdet model: it is emo_mm's. Write type='emo_mm.EMOv2'" in \
        _error_lines(result)
    no_checkpoint = _config_with(tmp_path, tiny, model="dict(backbone=dict(init_cfg=dict("
                                 "_delete_=True, type='Pretrained')))")
    result = _train(no_checkpoint, tmp_path / 'nockpt', env, expect=2)
    assert _error_lines(result) == ("error: model.backbone.init_cfg=dict(type='Pretrained') has "
                                    'no checkpoint: add checkpoint=PATH_OR_URL, or remove the '
                                    'init_cfg.')
    debug = _train(no_checkpoint, tmp_path / 'nockpt', env, '--debug', expect=1)
    assert 'Traceback' in debug.stderr and 'UserError' in debug.stderr


def test_dist_train_usage_and_busy_port(tiny, env):
    result = _run(['bash', 'tools/dist_train.sh', tiny], env, expect=2)
    assert result.stderr.splitlines() == [
        'usage: tools/dist_train.sh CONFIG NUM_PROCESSES [tools/train.py options...]',
        'error: give the config and the number of processes (e.g. 2), in that order.']
    with socket.socket() as busy:
        busy.bind(('127.0.0.1', 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _run(['bash', 'tools/dist_train.sh', tiny, '2'], dict(env, PORT=str(port)),
                      expect=2)
    assert result.stderr.strip() == (
        f'error: port {port} is in use (another distributed run?). Pick a free one, e.g. '
        f'PORT={port + 1} tools/dist_train.sh ...')


def test_user_errors_in_process(tiny, tmp_path):
    with pytest.raises(UserError, match='nothing to resume from'):
        prepare_train_config(tiny, work_dir=str(tmp_path / 'none'), resume='latest')
    with pytest.raises(CheckpointError):
        prepare_train_config(tiny, work_dir=str(tmp_path / 'x'), resume=__file__)
