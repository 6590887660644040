"""Loading faults: checkpoints with NaN, the authors' key layout, legacy pickles, and the
configs and inputs the tools are given. Each case asserts the message and exit code (the
tools' ``run_cli`` in-process, or the tools in subprocesses, marked slow) and, for
checkpoints, what was loaded.
"""
import os
import os.path as osp

import pytest
import torch

from emo_mm.apis import build_model, load_config
from emo_mm.demo.data import make_coco_shapes
from emo_mm.engine import prepare_test_config, prepare_train_config, run_cli, verify_checkpoint
from emo_mm.engine.worklock import release_work_dir
from emo_mm.models.weights import (CheckpointError, NonFiniteCheckpointError, UnsafeCheckpointError,
                                   allow_nonfinite_checkpoints, mmpretrain_to_authors,
                                   read_checkpoint)
from fault_helpers import PY, config_with, error_line, run, tool_env, write_tiny_config
from helpers import REPO, load_tool


@pytest.fixture(autouse=True)
def stamps(tmp_path_factory, monkeypatch):
    monkeypatch.setenv('EMO_MM_CACHE_DIR', str(tmp_path_factory.getbasetemp() / 'stamps'))


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    root = make_coco_shapes(osp.join(REPO, 'data', 'demo_coco'))
    return write_tiny_config(tmp_path_factory.mktemp('cfg') / 'tiny.py', root, extra=[
        'test_dataloader = dict(batch_size=2, dataset=dict(data_root=data_root, indices=4))',
        "test_cfg = dict(type='TestLoop')",
        "test_evaluator = dict(type='CocoMetric', metric='bbox', "
        "ann_file=data_root + 'annotations/instances_val.json')"])


@pytest.fixture(scope='module')
def checkpoints(tiny, tmp_path_factory):
    """A finite checkpoint of the tiny detector and a copy with NaN in three tensors."""
    folder = tmp_path_factory.mktemp('ckpt')
    torch.manual_seed(0)
    state = build_model(load_config(tiny)).state_dict()
    good = {'state_dict': state, 'meta': {'epoch': 1, 'iter': 2}}
    torch.save(good, folder / 'epoch_1.pth')
    names = [k for k, v in state.items() if v.is_floating_point()][:3]
    bad = {'state_dict': {k: v * float('nan') if k in names else v for k, v in state.items()},
           'meta': {'epoch': 2, 'iter': 4}}
    torch.save(bad, folder / 'epoch_2.pth')
    return folder, names


def _exit_line(capsys, call):
    """Runs ``call`` as a tool does (run_cli); returns (exit code, stderr)."""
    with pytest.raises(SystemExit) as exit_code:
        run_cli(call)
    return exit_code.value.code, capsys.readouterr().err


# ---------------------------------------------------------------------------------------
# Checkpoints with NaN: refused on every loading path, unless allowed.
# ---------------------------------------------------------------------------------------
@pytest.mark.slow  # about 20 s: builds the detector three times
def test_nonfinite_checkpoint_on_every_path(tiny, checkpoints, tmp_path, capsys, monkeypatch):
    folder, names = checkpoints
    nan = str(folder / 'epoch_2.pth')
    listed = ', '.join(f'state_dict.{n}' for n in names)
    detail = (f'{nan} holds NaN or infinite values in 3 tensors ({listed}): it was saved from a '
              'diverged run and would evaluate or train as garbage. To load it anyway (to '
              'inspect it), pass --allow-nonfinite (tools/train.py, tools/test.py, '
              'tools/infer.py) or set EMO_MM_ALLOW_NONFINITE=1.')
    code, err = _exit_line(capsys, lambda: prepare_test_config(tiny, nan))
    assert (code, err) == (2, f'error: Checkpoint: {detail}\n')
    prepare_test_config(tiny, nan, allow_nonfinite=True)  # the explicit opt-out

    code, err = _exit_line(capsys, lambda: prepare_train_config(
        tiny, work_dir=str(tmp_path / 'r'), resume=nan))
    assert (code, err) == (2, f'error: --resume: {detail}\n')
    release_work_dir(str(tmp_path / 'r'))
    code, err = _exit_line(capsys, lambda: prepare_train_config(
        tiny, work_dir=str(tmp_path / 'l'), cfg_options={'load_from': nan}))
    assert (code, err) == (2, f'error: load_from: {detail}\n')
    release_work_dir(str(tmp_path / 'l'))
    # --resume without a path: the newest checkpoint of the work dir is the NaN one.
    code, err = _exit_line(capsys, lambda: prepare_train_config(
        tiny, work_dir=str(folder), resume='latest'))
    good = folder / 'epoch_1.pth'
    assert (code, err) == (2, f'error: --resume: {detail} The newest finite one is {good}: '
                              f'resume from it with --resume {good}.\n')
    release_work_dir(str(folder))

    from emo_mm.models import EMOv2
    backbone = {k[len('backbone.'):]: v for k, v in torch.load(nan)['state_dict'].items()
                if k.startswith('backbone.')}
    torch.save(backbone, tmp_path / 'backbone.pth')
    model = EMOv2('1M', init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'backbone.pth')))
    with pytest.raises(NonFiniteCheckpointError, match=r'holds NaN or infinite values in 3 '
                       r'tensors \(stage0\.0\.conv\.weight, '):
        model.init_weights()
    monkeypatch.setenv('EMO_MM_ALLOW_NONFINITE', '1')
    EMOv2('1M', init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'backbone.pth'))) \
        .init_weights()
    monkeypatch.delenv('EMO_MM_ALLOW_NONFINITE')

    from mmengine.runner import load_checkpoint

    from emo_mm.engine import install_checkpoint_loader
    install_checkpoint_loader()  # MMEngine's own loader, as a Runner uses it
    with pytest.raises(NonFiniteCheckpointError):
        load_checkpoint(build_model(load_config(tiny)), nan)
    with allow_nonfinite_checkpoints():
        load_checkpoint(build_model(load_config(tiny)), nan)


def test_nonfinite_weights_in_inference(tiny, checkpoints, tmp_path, capsys, monkeypatch):
    folder, names = checkpoints
    nan = str(folder / 'epoch_2.pth')
    image = osp.join(REPO, 'data', 'demo_coco', 'val', '00000.png')
    monkeypatch.setattr('sys.argv', ['infer.py', image, '--model', tiny, '--weights', nan,
                                     '--device', 'cpu', '--out-dir', str(tmp_path / 'out')])
    code, err = _exit_line(capsys, load_tool('infer').main)
    assert code == 2 and err.startswith(f'error: {nan} holds NaN or infinite values in 3 tensors')


@pytest.mark.slow  # subprocess runs of the tools
@pytest.mark.extended
def test_nonfinite_checkpoint_in_tools(tiny, checkpoints, tmp_path):
    folder, _ = checkpoints
    env = tool_env(str(tmp_path / 'stamps'))
    nan = str(folder / 'epoch_2.pth')
    line = error_line(run([PY, 'tools/test.py', tiny, nan, '--work-dir', str(tmp_path / 't')],
                          env, expect=2))
    assert line.startswith(f'error: Checkpoint: {nan} holds NaN or infinite values in 3 tensors')
    result = run([PY, 'tools/test.py', tiny, nan, '--work-dir', str(tmp_path / 't'),
                  '--allow-nonfinite'], env)  # evaluates, as asked: NaN weights detect nothing
    assert 'testing results of the whole dataset is empty' in result.stdout


# ---------------------------------------------------------------------------------------
# The authors' key layout.
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def authors(tmp_path_factory):
    """A classifier file as the authors release it and `mim download` fetches it:
    ``{'net': ..., 'net_E': ...}`` with keys stage*, norm.*, head.*; and the mmpretrain
    state dict it corresponds to."""
    torch.manual_seed(0)
    model = build_model(load_config('emov2_1m_in1k'))
    state = {k: torch.randn_like(v) if v.is_floating_point() else v
             for k, v in model.state_dict().items() if not k.startswith('data_preprocessor.')}
    path = tmp_path_factory.mktemp('authors') / 'EMOv2_1M_224.pth'
    released = mmpretrain_to_authors(state)
    torch.save({'net': released, 'net_E': released, 'epoch': 300}, path)
    return str(path), state


@pytest.fixture
def logged(monkeypatch):
    """What emo_mm logs through MMEngine's print_log (its logger keeps the stdout it
    started with, so pytest's capture cannot see it)."""
    import mmengine.logging

    import emo_mm.engine.checkpoints
    lines = []
    original = mmengine.logging.print_log

    def print_log(msg, *args, **kwargs):
        lines.append(str(msg))
        return original(msg, *args, **kwargs)

    monkeypatch.setattr(mmengine.logging, 'print_log', print_log)
    monkeypatch.setattr(emo_mm.engine.checkpoints, 'print_log', print_log)
    return lines


def test_authors_layout_is_converted_on_the_fly(authors, tmp_path, capsys, logged):
    path, state = authors
    config = osp.join(REPO, 'configs', 'emov2_1m_in1k.py')
    model = build_model(load_config(config))
    verify_checkpoint(model, path)  # tools/test.py's check: passes after conversion
    from emo_mm.engine.checkpoints import adapt_loaded_checkpoint
    loaded = read_checkpoint(path)
    adapt_loaded_checkpoint(model, loaded, path)  # what the Runner does after loading
    assert loaded.keys() == {'state_dict'}
    for key, value in state.items():
        assert torch.equal(loaded['state_dict'][key], value), key
    note = (f"{path} is in the authors' key layout (stage*, norm.*, head.*): converted to the "
            "mmpretrain classifier's on the fly (python "
            "tools/model_converters/convert_checkpoint.py "
            f'{path} EMOv2_1M_224_mmpretrain.pth does it once).')
    assert [line for line in logged if 'authors' in line] == [note]

    from emo_mm.inference import build_inferencer
    inferencer = build_inferencer(config, path, device='cpu')
    assert [line for line in logged if 'authors' in line] == [note, note]
    loaded = inferencer.model.state_dict()
    for key, value in state.items():  # every weight is the file's, none random
        assert torch.equal(loaded[key], value), key

    capsys.readouterr()  # only the refusal below: earlier tests' loggers may have written
    code, err = _exit_line(capsys, lambda: prepare_train_config(
        config, work_dir=str(tmp_path / 'w'), resume=path))
    assert (code, err) == (2, f"error: --resume {path}: it is an ImageNet classifier in the "
                              "authors' key layout, which cannot be resumed. Start from it with "
                              f'--cfg-options load_from={path} instead.\n')
    release_work_dir(str(tmp_path / 'w'))


def test_authors_layout_into_a_detector_is_refused(authors, tiny):
    path, _ = authors
    from emo_mm.engine.checkpoints import adapt_loaded_checkpoint
    with pytest.raises(CheckpointError) as err:
        adapt_loaded_checkpoint(build_model(load_config(tiny)), read_checkpoint(path), path)
    assert str(err.value) == (
        f"{path} is an ImageNet classifier in the authors' key layout (stage*, norm.*, head.*), "
        'not a checkpoint of this model. Start the backbone from it instead: '
        f"model.backbone.init_cfg=dict(type='Pretrained', checkpoint='{path}').")


def test_model_zoo_weights_are_classifier_files():
    """`mim download` fetches the metafiles' Weights: the authors' classifier files, which
    every loader of emo_mm converts (above); only classifier configs list them."""
    index = load_tool('dev/model_zoo').load_index()
    with_weights = [(path, m) for path, _, models in index for m in models if m.get('Weights')]
    assert with_weights and all(m['Weights'].endswith('.pth') for _, m in with_weights)
    for path in sorted({path for path, _ in with_weights}):  # one config per metafile
        config = next(m['Config'] for p, m in with_weights if p == path)
        assert load_config(osp.join(REPO, config)).default_scope == 'mmpretrain', path
        assert all(m['Config'].startswith('configs/emov') and m['Config'].endswith('_in1k.py')
                   for p, m in with_weights if p == path)


def test_authors_file_with_mmengines_own_runner(authors, tmp_path, logged):
    """A Runner built from the classifier config alone, as `mim test` or mmpretrain's own
    tools/test.py build it (none of emo_mm's tools involved), converts the file too."""
    from mmengine.runner import Runner
    path, state = authors
    cfg = load_config('emov2_1m_in1k')
    cfg.work_dir = str(tmp_path / 'w')
    runner = Runner.from_cfg(cfg)
    runner.call_hook('before_run')
    runner.load_checkpoint(path)
    loaded = runner.model.state_dict()
    for key, value in state.items():
        assert torch.equal(loaded[key], value), key
    assert any("is in the authors' key layout" in line for line in logged)


@pytest.mark.slow  # subprocess runs of the tools
@pytest.mark.extended
def test_authors_file_in_test_and_infer(authors, tmp_path):
    """tools/test.py and tools/infer.py with the file as `mim download` leaves it."""
    path, _ = authors
    env = tool_env(str(tmp_path / 'stamps'))
    root = tmp_path / 'images'
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    lines = []
    for label in range(3):
        (root / 'val' / f'c{label}').mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(
                root / 'val' / f'c{label}' / f'{i}.jpg')
            lines.append(f'c{label}/{i}.jpg {label}')
    (root / 'val.txt').write_text('\n'.join(lines) + '\n')
    config = config_with(tmp_path, osp.join(REPO, 'configs', 'emov2_1m_in1k.py'),
                         test_dataloader="dict(batch_size=2, num_workers=0, persistent_workers="
                         f"False, dataset=dict(_delete_=True, type='CustomDataset', data_root="
                         f"{str(root)!r}, data_prefix='val', ann_file='val.txt', "
                         "pipeline={{_base_.test_pipeline}}))",
                         test_evaluator="dict(type='Accuracy', topk=(1, ))")
    result = run([PY, 'tools/test.py', config, path, '--work-dir', str(tmp_path / 'w')], env)
    assert (f"{path} is in the authors' key layout (stage*, norm.*, head.*): converted to the "
            "mmpretrain classifier's on the fly (python "
            "tools/model_converters/convert_checkpoint.py "
            f'{path} EMOv2_1M_224_mmpretrain.pth does it once).') in result.stdout
    assert 'accuracy/top1' in result.stdout
    result = run([PY, 'tools/infer.py', str(root / 'val' / 'c0' / '0.jpg'), '--model',
                  osp.join(REPO, 'configs', 'emov2_1m_in1k.py'), '--weights', path, '--device',
                  'cpu', '--out-dir', str(tmp_path / 'out')], env)
    assert "converted to the mmpretrain classifier's on the fly" in result.stdout
    assert 'missing keys' not in result.stdout + result.stderr


# ---------------------------------------------------------------------------------------
# A legacy (non-zip) pickle with a payload.
# ---------------------------------------------------------------------------------------
class _Payload:

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


def test_legacy_pickle_payload(tiny, tmp_path, capsys):
    marker = tmp_path / 'payload-ran'
    path = tmp_path / 'legacy.pth'
    torch.save({'state_dict': {'w': torch.zeros(1)}, 'x': _Payload(marker)}, path,
               _use_new_zipfile_serialization=False)
    with pytest.raises(UnsafeCheckpointError) as err:
        read_checkpoint(str(path))
    assert str(err.value).startswith(
        f'{path} (a legacy, non-zip PyTorch file: a pickle stream) refers to Python objects '
        'besides tensors (posix.system); unpickling them could run code from the file, so it '
        'was not loaded.')
    code, err = _exit_line(capsys, lambda: prepare_test_config(tiny, str(path)))
    assert code == 2 and 'legacy, non-zip' in err and '--trust-checkpoint' in err
    assert not marker.exists()
    torch.save({'w': torch.zeros(1)}, tmp_path / 'plain.pth', _use_new_zipfile_serialization=False)
    assert torch.equal(read_checkpoint(str(tmp_path / 'plain.pth'))['w'], torch.zeros(1))


# ---------------------------------------------------------------------------------------
# Configs: model arguments, syntax.
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize('option,message', [
    ('model.backbone.archh=5M', "EMOv2 has no argument 'archh' (did you mean 'arch'?); check the "
                                'config and --cfg-options'),
    ('model.backbone.arch=6M', "Unknown EMOv2 arch '6M'; choose one of ['1M', '2M', '5M', '20M', "
                               "'50M'] or pass a dict."),
    ('model.backbone.out_indices=(5,)', 'out_indices entry 5 is out of range: 0 is the stem, '
                                        '1..4 the stages (negatives count from the end, down to '
                                        '-5).'),
    ('model.backbone.frozen_stages=9', 'frozen_stages must be an int in [-1, 4] (-1: none, k: '
                                       'stem and stages 1..k), got 9.'),
])
def test_model_argument_errors(tiny, tmp_path, capsys, monkeypatch, option, message):
    work_dir = str(tmp_path / 'w')
    monkeypatch.setattr('sys.argv', ['train.py', tiny, '--work-dir', work_dir, '--cfg-options',
                                     option])
    code, err = _exit_line(capsys, load_tool('train').main)
    release_work_dir(work_dir)
    assert (code, err) == (2, f'error: Building RetinaNet > EMOv2 from the config failed: '
                              f'{message}\n')


def test_config_syntax_errors(tmp_path, capsys, monkeypatch):
    base = tmp_path / 'base.py'
    base.write_text("model = dict(\n    backbone=dict(arch='1M',)\noptimizer = 1\n")
    child = tmp_path / 'child.py'
    child.write_text("_base_ = ['./base.py']\nwork_dir = 'x'\n")
    for config, line in ((base, 1), (child, 1)):  # (Python names the unclosed bracket)
        monkeypatch.setattr('sys.argv', ['train.py', str(config)])
        code, err = _exit_line(capsys, load_tool('train').main)
        assert code == 2
        assert err.startswith(f'error: The config {base}, line {line} is not valid Python: '), err
        assert err.count('\n') == 1


@pytest.mark.slow  # a subprocess run of the tool
@pytest.mark.extended
def test_model_argument_error_in_a_subprocess(tiny, tmp_path):
    env = tool_env(str(tmp_path / 'stamps'))
    line = error_line(run([PY, 'tools/train.py', tiny, '--work-dir', str(tmp_path / 'w'),
                           '--cfg-options', 'model.backbone.archh=5M'], env, expect=2))
    assert line == ("error: Building RetinaNet > EMOv2 from the config failed: EMOv2 has no "
                    "argument 'archh' (did you mean 'arch'?); check the config and --cfg-options")


# ---------------------------------------------------------------------------------------
# tools/infer.py inputs.
# ---------------------------------------------------------------------------------------
def test_infer_refuses_files_that_are_not_images(tiny, tmp_path, capsys, monkeypatch):
    fake = tmp_path / 'photo.png'
    fake.write_text('not an image\n')
    monkeypatch.setattr('sys.argv', ['infer.py', str(fake), '--model', tiny, '--device', 'cpu'])
    code, err = _exit_line(capsys, load_tool('infer').main)
    assert (code, err) == (2, f'error: {fake} is not an image that can be decoded (cannot '
                              f"identify image file '{fake}'); give image files (JPEG, PNG, "
                              '...).\n')
    folder = tmp_path / 'folder'
    folder.mkdir()
    (folder / 'a.jpg').write_bytes(b'\xff\xd8\xff\xe0 truncated')
    monkeypatch.setattr('sys.argv', ['infer.py', str(folder), '--model', tiny, '--device', 'cpu'])
    code, err = _exit_line(capsys, load_tool('infer').main)
    assert code == 2 and err.startswith(f'error: {folder / "a.jpg"} is not an image that can be '
                                        'decoded (')
    monkeypatch.setattr('sys.argv', ['infer.py', str(tmp_path / 'missing.png'), '--model', tiny])
    code, err = _exit_line(capsys, load_tool('infer').main)
    assert (code, err) == (2, f'error: {tmp_path / "missing.png"} does not exist: give an image '
                              'file or a folder of images.\n')
