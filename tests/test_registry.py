"""emo_mm's scope is reachable from every toolbox's registry without importing emo_mm."""
import subprocess
import sys

from mmengine.registry import MODELS as ROOT_MODELS

import emo_mm.models  # noqa: F401
from emo_mm.registry import MODELS

SCRIPT = '''
import sys
from mmdet.registry import MODELS as DET
from mmseg.registry import MODELS as SEG
from mmaction.registry import MODELS as ACTION
from mmpretrain.registry import MODELS as CLS
assert 'emo_mm' not in sys.modules
def build(registry):
    model = registry.build(dict(type='emo_mm.EMOv2', arch='1M', out_indices=(4, )))
    print(registry.scope, type(model).__module__, type(model).__name__)
for registry in (DET, SEG, CLS):
    build(registry)
# mmaction2 1.2.0's registry imports mmaction.models, which needs emo_mm's stand-in for the
# DRN module missing from the wheel: applied as emo_mm's configs' custom_imports apply it.
import emo_mm.compat.enable
build(ACTION)
import mmaction.models
'''


def test_scope_from_every_toolbox():
    result = subprocess.run([sys.executable, '-c', SCRIPT], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.split('\n')
    for scope in ('mmdet', 'mmseg', 'mmaction', 'mmpretrain'):
        assert f'{scope} emo_mm.models.backbones.emov2 EMOv2' in lines


def test_registry_is_a_scoped_child():
    assert MODELS.scope == 'emo_mm'
    assert MODELS.parent is ROOT_MODELS
    assert ROOT_MODELS._children['emo_mm'] is MODELS
    assert MODELS.get('EMOv2').__name__ == 'EMOv2'
    assert ROOT_MODELS.get('emo_mm.EMOv2') is MODELS.get('EMOv2')
