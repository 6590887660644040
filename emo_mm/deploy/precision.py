"""bf16 inference of emo_mm models with PyTorch (onnxruntime's CPU provider has no bf16
kernels for Conv, MatMul, Gemm, Add, Sigmoid or Softmax, so a bf16 graph cannot run there).

>>> from emo_mm.deploy.precision import bf16_runner
>>> run = bf16_runner(model, example, mode='convert')     # doctest: +SKIP
>>> logits = run(images)                                  # doctest: +SKIP

Modes (:data:`BF16_MODES`):

* ``autocast``: the fp32 model under ``torch.autocast('cpu', torch.bfloat16)``: matmuls
  and convolutions in bf16, numerically sensitive ops (norms, softmax) in fp32;
* ``convert``: the model's parameters and buffers converted to bf16, inputs cast to bf16,
  outputs returned in fp32;
* ``compile``: ``convert`` under ``torch.compile`` (static shapes);
* ``aoti``: ``convert`` exported with torch.export and compiled ahead of time by
  AOTInductor into a package (``.pt2``) that :func:`load_package` runs without the model's
  Python code; static shapes (one package per input shape).

The model is switched to deploy mode first where it has one. Which mode is fastest on a
machine is measured (``tools/analysis_tools/precision_study.py``), not assumed.

:func:`autocast_network` puts a toolbox model's network (backbone, neck, heads' forward)
under bf16 autocast in place and leaves the task's post-processing (box decoding, NMS,
resizing) in fp32: ``tools/test.py CONFIG CKPT --bf16`` measures the bf16 metric with it.
"""
import copy
import functools
import os.path as osp
from typing import Callable, List, Optional

import torch
import torch.nn as nn

BF16_MODES = ('autocast', 'convert', 'compile', 'aoti')


def _first_tensor_to_float(outputs):
    if isinstance(outputs, torch.Tensor):
        return outputs.float()
    if isinstance(outputs, (list, tuple)):
        return type(outputs)(_first_tensor_to_float(o) for o in outputs)
    return outputs


def _floating_to_float(outputs):
    """Every floating tensor in (nested lists, tuples or dicts of) ``outputs`` as fp32."""
    if isinstance(outputs, torch.Tensor):
        return outputs.float() if outputs.is_floating_point() else outputs
    if isinstance(outputs, (list, tuple)):
        return type(outputs)(_floating_to_float(o) for o in outputs)
    if isinstance(outputs, dict):
        return type(outputs)((k, _floating_to_float(v)) for k, v in outputs.items())
    return outputs


def autocast_network(model: nn.Module, dtype: torch.dtype = torch.bfloat16,
                     device_type: str = 'cpu') -> List[str]:
    """Runs the ``forward`` of each of ``model``'s sub-networks (its direct children but
    the data preprocessor: backbone, neck, heads) under autocast to ``dtype`` and returns
    their outputs in fp32, in place. What the toolbox does after a head's forward (box
    decoding and NMS, whose CPU kernels take fp32 only; resizing; softmax) stays fp32,
    as in a deployment whose network alone runs in bf16. Returns the wrapped names."""
    wrapped = []
    for name, child in model.named_children():
        if name == 'data_preprocessor' or getattr(child, '_emo_mm_autocast', False):
            continue
        forward = child.forward

        @functools.wraps(forward)
        def run(*args, _forward=forward, **kwargs):
            with torch.autocast(device_type, dtype):
                return _floating_to_float(_forward(*args, **kwargs))
        child.forward = run  # an instance attribute: nn.Module.__call__ finds it first
        child._emo_mm_autocast = True
        wrapped.append(name)
    return wrapped


def bf16_model(model: nn.Module, channels_last: bool = False) -> nn.Module:
    """A deploy-mode, eval-mode copy of ``model`` with bf16 parameters and buffers."""
    from ..utils.onnx import switch_to_deploy
    model = copy.deepcopy(model).eval()
    switch_to_deploy(model)
    model = model.to(torch.bfloat16)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def export_package(model: nn.Module, example: torch.Tensor, path: str) -> str:
    """AOTInductor package of ``model`` (already in the wanted dtype) for ``example``'s
    shape and dtype; returns ``path``."""
    if not path.endswith('.pt2'):
        raise ValueError(f'An AOTInductor package is a .pt2 file; got {path}.')
    if not osp.isdir(osp.dirname(osp.abspath(path))):
        raise FileNotFoundError(f'Folder of {path} does not exist.')
    with torch.inference_mode():
        program = torch.export.export(model, (example, ))
    return torch._inductor.aoti_compile_and_package(program, package_path=path)


def load_package(path: str) -> Callable:
    """A callable running an AOTInductor package from :func:`export_package`."""
    return torch._inductor.aoti_load_package(path)


def bf16_runner(model: nn.Module, example: torch.Tensor, mode: str = 'convert',
                package_path: Optional[str] = None) -> Callable[[torch.Tensor], object]:
    """A callable ``images (fp32) -> outputs (fp32)`` computing ``model`` in bf16.

    Args:
        model (nn.Module): The fp32 model (left unchanged).
        example (torch.Tensor): An input of the shape the runner will see (used by
            ``compile`` to compile once and by ``aoti`` to export).
        mode (str): One of :data:`BF16_MODES`.
        package_path (str, optional): Where ``aoti`` writes its package (default: a
            temporary folder that lives as long as the process).
    """
    if mode not in BF16_MODES:
        raise ValueError(f'Unknown bf16 mode {mode!r}; choose from {BF16_MODES}.')
    if mode == 'autocast':
        from ..utils.onnx import switch_to_deploy
        fp32 = copy.deepcopy(model).eval()
        switch_to_deploy(fp32)

        def run(images):
            with torch.inference_mode(), torch.autocast('cpu', torch.bfloat16):
                return _first_tensor_to_float(fp32(images))
        return run
    converted = bf16_model(model)
    if mode == 'aoti':
        if package_path is None:
            import tempfile
            package_path = osp.join(tempfile.mkdtemp(prefix='emo_mm_aoti.'), 'model.pt2')
        runner = load_package(export_package(converted, example.to(torch.bfloat16),
                                             package_path))
    elif mode == 'compile':
        runner = torch.compile(converted, dynamic=False)
    else:
        runner = converted

    def run(images):
        with torch.inference_mode():
            return _first_tensor_to_float(runner(images.to(torch.bfloat16)))
    return run
