# Fine-tune DeepLabv3-EMOv2-5M on your own segmentation set (mmseg BaseSegDataset layout):
#   data/my_seg/images/{training,validation}/*.jpg
#   data/my_seg/annotations/{training,validation}/*.png  (pixel value = class index, 255 = ignore)
#   python tools/train.py configs/finetune/deeplabv3_emov2_5m_custom-seg.py
_base_ = ['../deeplabv3_emov2_5m_ade20k.py']
data_root = 'data/my_seg'
metainfo = dict(classes=('background', 'road', 'car'),
                palette=[[0, 0, 0], [128, 64, 128], [0, 0, 142]])
num_classes = 3

model = dict(decode_head=dict(num_classes=num_classes),
             auxiliary_head=dict(num_classes=num_classes))
_data = dict(type='BaseSegDataset', data_root=data_root, metainfo=metainfo,
             img_suffix='.jpg', seg_map_suffix='.png', reduce_zero_label=False)
train_dataloader = dict(dataset=dict(
    **_data, data_prefix=dict(img_path='images/training', seg_map_path='annotations/training')))
val_dataloader = dict(dataset=dict(
    **_data, data_prefix=dict(img_path='images/validation',
                              seg_map_path='annotations/validation')))
test_dataloader = val_dataloader
