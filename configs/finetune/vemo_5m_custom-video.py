# Fine-tune V-EMO-5M on your own videos (mmaction2 VideoDataset):
#   data/my_videos/{train,val}/*.mp4 and data/my_videos/{train,val}.txt with lines "<file> <label>"
#   python tools/train.py configs/finetune/vemo_5m_custom-video.py
_base_ = ['../vemo_5m_k400.py']
data_root = 'data/my_videos'
num_classes = 5

model = dict(cls_head=dict(num_classes=num_classes))
# The K400 recipe's RandAugment comes from pytorchvideo, which is not installed (its last
# release, 0.1.5, imports torchvision.transforms.functional_tensor, gone since torchvision
# 0.17); torchvision's RandAugment (same number of ops and magnitude, applied alike to all
# frames of a clip) takes its place.
train_pipeline = [
    dict(type='DecordInit'),
    dict(type='UniformSample', clip_len=_base_.num_frames, num_clips=1),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(-1, 192)),
    dict(type='TorchVisionWrapper', op='RandAugment', magnitude=7, num_ops=4),
    dict(type='RandomResizedCrop'),
    dict(type='Resize', scale=(160, 160), keep_ratio=False),
    dict(type='Flip', flip_ratio=0.5),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackActionInputs'),
]
train_dataloader = dict(dataset=dict(ann_file=f'{data_root}/train.txt',
                                     data_prefix=dict(video=f'{data_root}/train'),
                                     pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(ann_file=f'{data_root}/val.txt',
                                   data_prefix=dict(video=f'{data_root}/val')))
test_dataloader = dict(dataset=dict(ann_file=f'{data_root}/val.txt',
                                    data_prefix=dict(video=f'{data_root}/val')))
