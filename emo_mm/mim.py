"""``python -m emo_mm.mim ARGS``: OpenMMLab's ``mim`` command line, working for an editable
install of emo_mm too (see :mod:`emo_mm.compat.mim_editable`).

    python -m emo_mm.mim search emo_mm --model retinanet
    python -m emo_mm.mim run emo_mm get_flops 5M
    python -m emo_mm.mim train emo_mm retinanet_emov2_5m_coco.py --work-dir work_dirs/x
"""
from .compat.mim_editable import main

if __name__ == '__main__':
    main()
