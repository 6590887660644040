# Where the generated demo sets and the demo backbone checkpoint live, and the class names
# of the sets: the one definition shared by the demo configs (which inherit this file) and
# by emo_mm/demo, the generators behind `python tools/misc/make_demo_data.py` (which read their
# defaults from it). Every name starts with `demo_`: mmengine refuses a key defined by two
# bases of one config, and the demo configs also inherit a toolbox config.
demo_coco_root = 'data/demo_coco'
# The four shape kinds the generator draws, in the category order of its annotations.
demo_coco_classes = ('circle', 'square', 'triangle', 'star')
# EMOv2-1M pretrained on labelling generated shapes (emo_mm/demo/pretrain.py): the demo
# detectors' stand-in for ImageNet weights.
demo_shapes_backbone = 'data/demo_shapes_backbone/emov2_1m_shapes.pth'
# `make demo`'s own detection set (emo_mm.demo.data.make_demo_det_shapes), its classes and
# its backbone pretrained on the same kind of images.
demo_det_root = 'data/demo_det_shapes'
demo_det_classes = ('red circle', 'green square', 'blue triangle', 'yellow star')
demo_det_backbone = 'data/demo_det_backbone/emov2_1m_det-shapes.pth'
demo_ade20k_root = 'data/demo_ade20k'
# The first five ADE20K class names: mmseg's ADE20KDataset keeps their ids 0..4.
demo_ade20k_classes = ('wall', 'building', 'sky', 'floor', 'tree')
demo_hrf_root = 'data/demo_hrf'
demo_kinetics_root = 'data/demo_kinetics'
# One shape per image, labelled by its kind (mmpretrain CustomDataset layout; the classes
# are demo_coco_classes, in that order).
demo_cls_root = 'data/demo_shapes_cls'
