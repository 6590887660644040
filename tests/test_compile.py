"""torch.compile: the backbones trace as one graph (fullgraph=True) and match eager."""
import logging
import subprocess
import sys

import pytest
import torch

from emo_mm.apis import load_config
from emo_mm.engine.compile import CompileHook, compiled_target, enable_compile
from emo_mm.models import EMO, VEMO, EMOv2
from helpers import REPO, build_classifier, relative_error


def _outputs(result):
    return list(result) if isinstance(result, (tuple, list)) else [result]


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize('build,shape', [
    (lambda: EMOv2('1M', window_size=7), (1, 3, 97, 131)),
    (lambda: EMO('1M'), (1, 3, 97, 131)),
    (lambda: VEMO({'depths': [1, 1, 2, 1], 'embed_dims': [16, 24, 40, 40],
                   'exp_ratios': [2., 2., 2., 2.], 'dim_heads': [8, 8, 20, 20]},
                  global_pool=False), (1, 3, 4, 64, 80)),
], ids=['emov2', 'emov1', 'vemo'])
def test_backbone_is_one_graph(build, shape):
    model = build().eval()
    explanation = torch._dynamo.explain(model)(torch.rand(shape))
    reasons = [b.reason for b in explanation.break_reasons]
    assert explanation.graph_break_count == 0, reasons
    assert explanation.graph_count == 1


@pytest.mark.parametrize('fused', [True], ids=['fused'])
def test_fullgraph_compile_matches_eager(fused):
    model = EMOv2('1M', window_size=7, fused_attn=fused).eval()
    for module in model.modules():  # LayerScale away from 1e-6: attention must count
        if hasattr(module, 'gamma'):
            torch.nn.init.uniform_(module.gamma, 0.5, 1.0)
    compiled = torch.compile(model, fullgraph=True, backend='aot_eager')
    images = torch.rand(2, 3, 97, 131)
    with torch.no_grad():
        expected, actual = model(images), compiled(images)
    for a, e in zip(_outputs(actual), _outputs(expected)):
        assert relative_error(a, e) < 1e-5


@pytest.mark.slow
@pytest.mark.extended
def test_dynamic_compile_reuses_the_graph_across_sizes():
    graphs = []

    def counting_backend(graph_module, example_inputs):
        graphs.append(graph_module)
        return graph_module.forward

    model = EMOv2('1M', window_size=7).eval()
    compiled = torch.compile(model, fullgraph=True, dynamic=True, backend=counting_backend)
    with torch.no_grad():
        # 112x144 and 96x128: stage maps 7x9 / 4x5 and 6x8 / 3x4, the same padding
        # pattern (height unpadded at stride 16 only in the first).
        for shape in [(1, 3, 112, 144), (1, 3, 96, 128)]:
            images = torch.rand(shape)
            for a, e in zip(compiled(images), model(images)):
                assert relative_error(a, e) < 1e-5
    assert len(graphs) == 1


@pytest.mark.slow
@pytest.mark.extended
def test_inductor_compile_matches_eager():
    model = EMOv2('1M', window_size=7).eval()
    compiled = torch.compile(model, fullgraph=True)
    images = torch.rand(1, 3, 96, 128)
    with torch.no_grad():
        for a, e in zip(compiled(images), model(images)):
            assert relative_error(a, e) < 1e-5


def test_enable_compile_adds_the_hook_and_the_import():
    cfg = load_config('emov2_1m_in1k')
    before = list(cfg.get('custom_hooks', []))
    enable_compile(cfg)
    assert cfg.custom_hooks[:len(before)] == before
    assert cfg.custom_hooks[-1] == dict(type='emo_mm.CompileHook', target='backbone',
                                        dynamic=True)
    assert cfg.custom_imports == load_config('emov2_1m_in1k').custom_imports  # none needed
    with pytest.raises(RuntimeError, match='compiles already'):
        enable_compile(cfg)
    mmengine_cfg = load_config('emov2_1m_in1k')
    enable_compile(mmengine_cfg, target='train_step', mode='max-autotune')
    assert mmengine_cfg.compile == dict(dynamic=True, mode='max-autotune')


def test_compile_hook_compiles_the_backbone_in_place():
    model = build_classifier('1M').eval()
    keys = list(model.state_dict())

    class Runner:
        logger = logging.getLogger('test_compile')

    Runner.model = model
    hook = CompileHook(backend='eager', dynamic=False, fullgraph=True)
    assert compiled_target(model) is False
    hook.before_test(Runner)
    assert compiled_target(model) is True
    hook.before_val(Runner)  # a second call leaves it as it is
    assert list(model.state_dict()) == keys  # checkpoints unchanged
    images = torch.rand(1, 3, 112, 112)
    with torch.no_grad():
        compiled_scores = model(images, mode='tensor')
        model.backbone._compiled_call_impl = None
        eager_scores = model(images, mode='tensor')
    assert relative_error(compiled_scores, eager_scores) < 1e-5
    with pytest.raises(AttributeError, match='no submodule'):
        CompileHook(target='neck.missing').before_train(Runner)


def test_compile_hook_is_found_by_its_registered_name():
    """``type='emo_mm.CompileHook'`` builds in a fresh process without custom_imports:
    MMEngine imports emo_mm.engine, the hook registry's location, which exports it."""
    code = ('from mmengine.registry import HOOKS\n'
            'hook = HOOKS.build(dict(type="emo_mm.CompileHook", target="backbone"))\n'
            'import emo_mm.engine\n'
            'print(type(hook) is emo_mm.engine.CompileHook, hook.options)')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "True {'dynamic': True}"
