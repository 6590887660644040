"""EMOv1 backbone API (shared with EMOv2) and the Meta-Mobile Block structure."""
import pytest
import torch

from emo_mm.models import EMO, I2RMB, IRMB, MetaMobileBlock


def test_blocks_share_the_skeleton():
    assert issubclass(IRMB, MetaMobileBlock) and issubclass(I2RMB, MetaMobileBlock)
    assert IRMB.forward is MetaMobileBlock.forward is I2RMB.forward
    model = EMO('1M')
    stem_block = model.stage0[1]
    assert not stem_block.has_skip and isinstance(stem_block.norm, torch.nn.Identity)
    assert stem_block.se.conv_reduce.out_channels == 24
    attn = model.stage3[1]
    assert attn.attention and attn.has_skip and isinstance(attn.ls, torch.nn.Identity)
    assert not model.stage3[0].attention  # downsampling blocks never attend


def test_api_and_errors():
    with pytest.raises(KeyError, match='Unknown EMO arch'):
        EMO('20M')
    with pytest.raises(ValueError, match='not a multiple of dim_heads'):
        EMO(dict(EMO.arch_settings['1M'], dim_heads=[16, 16, 30, 21]))
    with pytest.raises(ValueError, match='out of range'):
        EMO('1M', out_indices=(5, ))
    with pytest.raises(ValueError, match='frozen_stages'):
        EMO('1M', frozen_stages=5)
    model = EMO('1M', out_indices=(0, 2, 4), frozen_stages=2, norm_eval=True).train()
    assert all(not p.requires_grad for p in model.stage2.parameters())
    assert all(p.requires_grad for p in model.stage3.parameters())
    outs = model.eval()(torch.rand(1, 3, 70, 90))
    assert [tuple(o.shape[1:]) for o in outs] == [(24, 35, 45), (48, 9, 12), (168, 3, 3)]
    with pytest.raises(ValueError, match='3 channels'):
        model(torch.rand(1, 4, 64, 64))
    with pytest.warns(DeprecationWarning):
        EMO('1M', pretrained='x.pth')
