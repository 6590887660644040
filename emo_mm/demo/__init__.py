"""What ``make demo`` and the learning tests train on, generated instead of downloaded.

* :mod:`emo_mm.demo.data`: small deterministic data sets in the toolboxes' formats
  (COCO, ADE20K, HRF, Kinetics layouts), written once under ``data/``.
* :mod:`emo_mm.demo.pretrain`: an EMOv2-1M backbone pretrained on generated shapes, the
  demo detectors' stand-in for ImageNet weights.

Both read their default locations and class names from
``configs/demo/_base_/demo_data.py``, which the demo configs inherit.
``python tools/misc/make_demo_data.py all`` writes everything.
"""
