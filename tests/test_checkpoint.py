"""Checkpoint loading: every container, every mismatch reported, bad files explained."""
import pytest
import torch

from emo_mm.models import EMOv2, authors_to_mmpretrain
from emo_mm.models import checkpoint as ckpt
from emo_mm.models import mmpretrain_to_authors
from emo_mm.models.weights import CheckpointError, load_pretrained


@pytest.fixture(scope='module')
def classifier_state():
    """An authors'-layout classifier state dict (1M) with distinctive values."""
    model = EMOv2('1M', out_indices=-1, final_norm=True)
    state = {k: torch.randn_like(v, dtype=torch.float32).to(v.dtype) if v.is_floating_point()
             else v for k, v in model.state_dict().items()}
    state['head.weight'] = torch.randn(1000, 180)
    state['head.bias'] = torch.randn(1000)
    return state


@pytest.fixture
def messages(monkeypatch):
    logged = []
    monkeypatch.setattr(ckpt, 'print_log', lambda msg, **kw: logged.append(
        (kw.get('level'), msg)))
    return logged


def _assert_loaded(model, state):
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state[key], msg=key)


@pytest.mark.parametrize('container', ['flat', 'net', 'net_E', 'state_dict', 'module', 'both'])
def test_containers(container, classifier_state, tmp_path, messages):
    state = dict(classifier_state)
    wrapped = {
        'flat': state,
        'net': {'net': state, 'epoch': 300},
        'net_E': {'net_E': state, 'optimizer': {}},
        'state_dict': {'state_dict': state, 'meta': {'epoch': 3}},
        'module': {f'module.{k}': v for k, v in state.items()},
        'both': {'net': {k: torch.zeros_like(v) for k, v in state.items()}, 'net_E': state},
    }[container]
    path = str(tmp_path / 'ckpt.pth')
    torch.save(wrapped, path)
    model = EMOv2('1M', init_cfg=dict(type='Pretrained', checkpoint=path))
    model.init_weights()
    _assert_loaded(model, state)
    report = load_pretrained(EMOv2('1M'), path)
    assert set(report.dropped) == {'norm.norm.weight', 'norm.norm.bias', 'head.weight',
                                   'head.bias'}
    assert not report.missing and not report.unexpected
    assert any('Dropped 4 classifier tensors' in m for _, m in messages)


def test_classifier_keeps_its_norm(classifier_state, tmp_path):
    path = str(tmp_path / 'cls.pth')
    torch.save(classifier_state, path)
    model = EMOv2('1M', out_indices=-1, final_norm=True)
    report = load_pretrained(model, path, drop_prefixes=())
    assert report.unexpected == ('head.weight', 'head.bias')
    assert 'norm.norm.weight' in report.loaded


def test_missing_and_unexpected_are_reported(classifier_state, tmp_path, messages):
    state = {k: v for k, v in classifier_state.items() if not k.startswith('stage4.2.')}
    state['extra.weight'] = torch.zeros(3)
    path = str(tmp_path / 'partial.pth')
    torch.save(state, path)
    report = load_pretrained(EMOv2('1M'), path)
    assert report.unexpected == ('extra.weight', )
    assert report.missing and all(k.startswith('stage4.2.') for k in report.missing)
    warnings = [m for level, m in messages if level == 30]  # logging.WARNING
    assert any('missing from the checkpoint' in m and 'stage4.2.' in m for m in warnings)
    assert any('not in the model' in m and 'extra.weight' in m for m in warnings)


def test_prefix_and_backbone_unwrapping(classifier_state, tmp_path):
    backbone = {k: v for k, v in classifier_state.items() if k.startswith('stage')}
    path = str(tmp_path / 'det.pth')
    torch.save({'state_dict': {**{f'backbone.{k}': v for k, v in backbone.items()},
                               'neck.conv.weight': torch.zeros(1)}}, path)
    model = EMOv2('1M')
    report = load_pretrained(model, path, prefix='backbone.')
    assert not report.missing and not report.unexpected
    _assert_loaded(model, backbone)
    only_backbone = str(tmp_path / 'bb.pth')
    torch.save({f'backbone.{k}': v for k, v in backbone.items()}, only_backbone)
    assert not load_pretrained(EMOv2('1M'), only_backbone).missing
    with pytest.raises(CheckpointError, match="no keys under prefix 'encoder.'"):
        load_pretrained(EMOv2('1M'), path, prefix='encoder.')


def test_wrong_shapes(tmp_path):
    path = str(tmp_path / '2m.pth')
    torch.save(EMOv2('2M').state_dict(), path)
    with pytest.raises(CheckpointError) as err:
        load_pretrained(EMOv2('1M'), path)
    message = str(err.value)
    assert '130 tensors' in message and 'was it saved for another variant' in message
    assert 'stage3.0.proj.conv.weight: checkpoint (120, 288, 1, 1) vs model (80, 288, 1, 1)' \
        in message


def test_foreign_checkpoint(tmp_path):
    path = str(tmp_path / 'resnet.pth')
    torch.save({'conv1.weight': torch.zeros(64, 3, 7, 7), 'fc.weight': torch.zeros(10, 64)},
               path)
    with pytest.raises(CheckpointError, match='None of the 2 tensors .* belong to EMOv2'):
        load_pretrained(EMOv2('1M'), path)
    torch.save({'meta': {'x': 1}}, path)
    with pytest.raises(CheckpointError, match='holds no state dict'):
        load_pretrained(EMOv2('1M'), path)


def test_bad_files(classifier_state, tmp_path):
    with pytest.raises(FileNotFoundError, match='does not exist'):
        load_pretrained(EMOv2('1M'), str(tmp_path / 'nope.pth'))
    garbage = tmp_path / 'garbage.pth'
    garbage.write_bytes(b'this is not a checkpoint' * 100)
    with pytest.raises(CheckpointError, match='corrupt or truncated'):
        load_pretrained(EMOv2('1M'), str(garbage))
    good = tmp_path / 'good.pth'
    torch.save(classifier_state, str(good))
    data = good.read_bytes()
    truncated = tmp_path / 'truncated.pth'
    truncated.write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError, match='corrupt or truncated'):
        load_pretrained(EMOv2('1M'), str(truncated))


class _Opaque:  # stands for the Python objects of a full training checkpoint
    pass


def test_full_training_checkpoint_needs_opt_in(classifier_state, tmp_path):
    path = str(tmp_path / 'full.pth')
    torch.save({'state_dict': classifier_state, 'meta': _Opaque()}, path)
    with pytest.raises(CheckpointError, match='weights_only=False'):
        load_pretrained(EMOv2('1M'), path)
    model = EMOv2('1M', init_cfg=dict(type='Pretrained', checkpoint=path, weights_only=False))
    model.init_weights()
    _assert_loaded(model, classifier_state)


def test_classifier_layout_round_trip(classifier_state):
    converted = authors_to_mmpretrain(classifier_state)
    assert 'backbone.norm.norm.weight' in converted and 'head.fc.weight' in converted
    assert 'backbone.stage0.0.conv.weight' in converted
    back = mmpretrain_to_authors(converted)
    assert list(back) == list(classifier_state)
    assert all(back[k] is classifier_state[k] for k in back)
    with pytest.raises(CheckpointError, match='already in mmpretrain layout'):
        authors_to_mmpretrain(converted)
    with pytest.raises(CheckpointError, match='no place'):
        mmpretrain_to_authors({'data_preprocessor.mean': torch.zeros(3)})


def test_random_bytes_are_called_corrupt_not_unsafe(tmp_path):
    path = tmp_path / 'random.pth'
    path.write_bytes(bytes(range(256)) * 64)
    with pytest.raises(CheckpointError) as err:
        load_pretrained(EMOv2('1M'), str(path))
    assert 'corrupt or truncated' in str(err.value)
    assert 'weights_only' not in str(err.value) and 'trust' not in str(err.value)


def test_detector_checkpoint_backbone_is_unwrapped(classifier_state, tmp_path, messages):
    backbone = {k: v for k, v in classifier_state.items() if k.startswith('stage')}
    path = str(tmp_path / 'retinanet.pth')
    torch.save({'state_dict': {**{f'backbone.{k}': v for k, v in backbone.items()},
                               'neck.lateral.weight': torch.zeros(2),
                               'bbox_head.cls.weight': torch.zeros(3)}}, path)
    model = EMOv2('1M')
    report = load_pretrained(model, path)  # no prefix given
    assert not report.missing and not report.unexpected
    _assert_loaded(model, backbone)
    assert any("loading its backbone.* tensors (2 others ignored; pass prefix='backbone.'" in m
               for _, m in messages)


def test_pretrained_without_checkpoint_says_so():
    with pytest.raises(CheckpointError, match=r"EMOv2.init_cfg=dict\(type='Pretrained'\) has "
                       r"no checkpoint: add checkpoint=PATH_OR_URL"):
        ckpt.load_pretrained_from_init_cfg(EMOv2('1M'), dict(type='Pretrained'))


class _Payload:
    """Unpickling this runs ``open(marker, 'w')``: a stand-in for any code in a file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, 'w'))


def test_payload_is_never_run(classifier_state, tmp_path):
    marker = tmp_path / 'ran'
    path = str(tmp_path / 'evil.pth')
    torch.save({'state_dict': classifier_state, 'x': _Payload(str(marker))}, path)
    with pytest.raises(ckpt.UnsafeCheckpointError) as err:
        load_pretrained(EMOv2('1M'), path)
    assert 'io.open' in str(err.value) and 'weights_only=False' in str(err.value)
    model = EMOv2('1M', init_cfg=dict(type='Pretrained', checkpoint=path))
    with pytest.raises(ckpt.UnsafeCheckpointError):
        model.init_weights()
    from emo_mm.engine import install_checkpoint_loader, safe_load
    install_checkpoint_loader()
    from mmengine.runner import load_checkpoint
    with pytest.raises(ckpt.UnsafeCheckpointError, match='--trust-checkpoint'):
        load_checkpoint(EMOv2('1M'), path)  # MMEngine's loader (load_from, inferencers)
    with pytest.raises(ckpt.UnsafeCheckpointError):
        safe_load(path)
    assert not marker.exists()
    with ckpt.trusted_checkpoints(path):  # the control: the payload is real
        safe_load(path)
    assert marker.exists()
