"""torchvision detectors on EMO: the FPN backbone contract, short training runs, and a learning test (mAP)."""

import pytest
import torch
from detection_data import make_dataset
from timm.layers.norm_act import FrozenBatchNormAct2d
from torchvision.models.detection import FasterRCNN, RetinaNet
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.ssd import SSD
from torchvision.ops.misc import FrozenBatchNorm2d

from emo import detection

SMALL = dict(min_size=128, max_size=128)
SMALL_RCNN = dict(
    SMALL,
    rpn_pre_nms_top_n_train=200,
    rpn_post_nms_top_n_train=100,
    rpn_pre_nms_top_n_test=100,
    rpn_post_nms_top_n_test=50,
    box_batch_size_per_image=64,
)


def _count(module, trainable=False):
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable)


def test_fpn_backbone_levels_and_channels():
    backbone = detection.fpn_backbone('emo_2m').eval()
    assert isinstance(backbone, BackboneWithFPN) and backbone.out_channels == 256
    with torch.no_grad():
        features = backbone(torch.randn(1, 3, 256, 192))
    assert list(features) == ['0', '1', '2', '3', 'pool']
    assert [tuple(f.shape[-2:]) for f in features.values()] == [(64, 48), (32, 24), (16, 12), (8, 6), (4, 3)]
    assert all(f.shape[1] == 256 for f in features.values())
    p3 = detection.fpn_backbone('emo_1m', returned_layers=[2, 3, 4], out_channels=128).eval()
    with torch.no_grad():
        assert [f.shape[-1] for f in p3(torch.randn(1, 3, 128, 128)).values()] == [16, 8, 4, 2]
    with pytest.raises(ValueError, match='returned_layers'):
        detection.fpn_backbone('emo_1m', returned_layers=[0, 1])
    with pytest.raises(ValueError, match='unknown EMO or EMOv2 variant'):
        detection.fpn_backbone('emo_3m')


@pytest.mark.parametrize('variant', ['emo_1m', 'emo2_1m'])
def test_body_matches_the_classifier_stages(official_files, variant):
    import timm

    path = str(official_files[variant])
    model = timm.create_model(variant, pretrained=True, pretrained_cfg_overlay=dict(file=path)).eval()
    backbone = detection.fpn_backbone(variant, pretrained_backbone=path).eval()
    x = torch.randn(1, 3, 128, 160)
    with torch.no_grad():
        taps = model.forward_intermediates(x, intermediates_only=True)
        body = backbone.body(x)
    for i, tap in enumerate(taps):  # frozen BN computes what eval-mode BN does
        torch.testing.assert_close(body[str(i)], tap, rtol=1e-4, atol=1e-4)


def test_pretrained_backbone_freezes_like_torchvision(official_files):
    path = str(official_files['emo_1m'])
    backbone = detection.fpn_backbone('emo_1m', pretrained_backbone=path)  # default: 3 trainable layers
    body = backbone.body
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in body.modules())
    frozen = [m for m in body.modules() if isinstance(m, (FrozenBatchNorm2d, FrozenBatchNormAct2d))]
    assert len(frozen) == 21 and all(m.eps == 1e-6 for m in frozen)  # EMO-1M has 21 BatchNorms
    trainable = {n.split('.')[0] for n, p in body.named_parameters() if p.requires_grad}
    assert trainable == {'layer2', 'layer3', 'layer4'}
    none = detection.fpn_backbone('emo_1m', pretrained_backbone=path, trainable_layers=0)
    # torchvision freezes only the body: every FPN parameter still trains
    assert _count(none.body, trainable=True) == 0 and _count(none.fpn, trainable=True) == _count(none.fpn) > 0
    scratch = detection.fpn_backbone('emo_1m')  # no weights: everything trains, plain BatchNorm
    assert _count(scratch.body, trainable=True) == _count(scratch.body)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in scratch.body.modules())
    with pytest.raises(ValueError, match='trainable_layers'):
        detection.fpn_backbone('emo_1m', trainable_layers=6)


@pytest.mark.parametrize(
    'variant, retina_m, ssd_m, rel',
    [
        ('emo_1m', 10.4, 2.3, 0.015),
        ('emo_2m', 11.5, 3.3, 0.015),
        ('emo_5m', 14.4, 6.0, 0.015),
        ('emo2_1m', 10.5, 2.4, 0.015),
        # the EMOv2 paper prints SSDLite-2M 3.3M and -5M 6.0M; ours are 3.350M and 6.094M, 1.5% and 1.6% above (the
        # RetinaNets agree to 0.6%)
        ('emo2_2m', 11.5, 3.3, 0.02),
        ('emo2_5m', 14.4, 6.0, 0.02),
        ('emo2_20m', 29.8, 21.2, 0.015),
    ],
)
def test_detector_sizes_match_the_paper(variant, retina_m, ssd_m, rel):
    """Parameter counts of the papers' detectors (COCO, 80 classes) within 1.5% (two EMOv2 rows: 2%)."""
    assert _count(detection.retinanet(variant, num_classes=80)) / 1e6 == pytest.approx(retina_m, rel=rel)
    assert _count(detection.ssdlite(variant, num_classes=81)) / 1e6 == pytest.approx(ssd_m, rel=rel)


BUILDERS = {
    'retinanet': lambda: detection.retinanet('emo_1m', num_classes=3, **SMALL),
    'fasterrcnn': lambda: detection.fasterrcnn('emo_1m', num_classes=3, **SMALL_RCNN),
    'ssdlite': lambda: detection.ssdlite('emo_1m', num_classes=3, size=128),
}


@pytest.mark.parametrize('name', list(BUILDERS))
def test_builders_train_and_predict(name):
    torch.manual_seed(0)
    model = BUILDERS[name]()
    assert isinstance(model, {'retinanet': RetinaNet, 'fasterrcnn': FasterRCNN, 'ssdlite': SSD}[name])
    data = make_dataset(4, seed=0)
    images, targets = [d[0] for d in data], [d[1] for d in data]
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4 if name == 'retinanet' else 3e-4)
    losses = []
    model.train()
    for _ in range(8):
        loss = sum(model(images, targets).values())
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        optimizer.step()
        losses.append(loss.item())
    assert min(losses[-3:]) < 0.8 * losses[0], losses
    model.eval()
    with torch.no_grad():
        out = model([torch.rand(3, 100, 140)])
    assert set(out[0]) == {'boxes', 'scores', 'labels'} and out[0]['boxes'].shape[1] == 4


def _map(model, data):
    from torchmetrics.detection import MeanAveragePrecision

    metric = MeanAveragePrecision(iou_type='bbox')
    model.eval()
    with torch.no_grad():
        metric.update(model([d[0] for d in data]), [d[1] for d in data])
    return metric.compute()['map'].item()


@pytest.mark.slow
@pytest.mark.exhaustive  # 60-80 s; left out of CI's budget (test_builders_train_and_predict trains every builder)
def test_ssdlite_learns_generated_shapes():
    """From scratch, 200 steps of SSDLite-EMO-1M reach a COCO mAP far above the untrained model's on held-out
    images (measured: 0.001 untrained, about 0.5 trained)."""
    torch.manual_seed(0)
    train, held_out = make_dataset(64, seed=1), make_dataset(16, seed=2)
    model = detection.ssdlite('emo_1m', num_classes=3, size=128)
    untrained = _map(model, held_out)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=2e-3, weight_decay=0.01)
    steps = 200
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=steps, pct_start=0.1)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        model.train()
        batch = [train[i] for i in torch.randperm(len(train), generator=g)[:8]]
        loss = sum(model([b[0] for b in batch], [b[1] for b in batch]).values())
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        optimizer.step()
        schedule.step()
    trained = _map(model, held_out)
    # torchmetrics gives -1 when it has nothing to score: the ranges catch that as well as a poor model
    assert 0 <= untrained < 0.05 and 0.3 < trained <= 1, (untrained, trained)


def test_detector_gflops_count_the_attention_however_it_runs():
    # fvcore has no count for scaled_dot_product_attention: the count must not depend on timm's fused_attn
    from timm.layers import set_fused_attn, use_fused_attn

    before = use_fused_attn()
    counts = {}
    try:
        for fused in (True, False):
            set_fused_attn(fused)
            counts[fused] = detection.detector_gflops(detection.ssdlite('emo_1m'), 320, 320)
    finally:
        set_fused_attn(before)
    assert counts[True] == counts[False]
    assert counts[True] == pytest.approx(0.6, abs=0.02)  # docs/detection.md; the paper gives 0.6 for SSDLite EMO-1M
