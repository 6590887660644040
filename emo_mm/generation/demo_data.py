"""Deprecated: renamed :mod:`emo_mm.generation.class_shapes`; kept for one release."""
import runpy

from ..utils.deprecation import alias_module, warn_renamed

if __name__ == '__main__':
    warn_renamed('python -m emo_mm.generation.demo_data',
                 'python -m emo_mm.generation.class_shapes', stacklevel=2)
    runpy.run_module('emo_mm.generation.class_shapes', run_name='__main__')
else:
    alias_module(__name__, 'emo_mm.generation.class_shapes')
