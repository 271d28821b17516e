"""GradCAM: the math by hand, agreement with the grad-cam package, and that a call leaves no trace on the model."""

from __future__ import annotations

import gc

import matplotlib
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from eva9.data import MEAN, STD
from eva9.gradcam import CAMResult, GradCAM, gradcam_map, overlay, scale_per_image
from eva9.models import resnet18

LAYERS = ["layer1", "layer2", "layer3", "layer4"]


# ------------------------------------------------------------------------------------------------------ models


class TinyNet(nn.Module):
    """features (conv, full resolution) → block (stride-2 conv, BN, ReLU) → mean pool → linear; counts passes."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.features = nn.Conv2d(3, 4, kernel_size=3, padding=1)
        self.block = nn.Sequential(nn.Conv2d(4, 5, kernel_size=3, stride=2, padding=1), nn.BatchNorm2d(5), nn.ReLU())
        self.head = nn.Linear(5, classes)
        self.forwards = 0
        self.backwards = 0

    def _count_backward(self, grad: torch.Tensor) -> None:
        self.backwards += 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.forwards += 1
        out = self.block(self.features(x))
        if out.requires_grad:
            out.register_hook(self._count_backward)
        return self.head(out.mean(dim=(2, 3)))


class PoolHead(nn.Module):
    """One conv at full resolution, then global mean pool and a linear head: GradCAM has a closed form here."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.features = nn.Conv2d(3, 4, kernel_size=3, padding=1)
        self.head = nn.Linear(4, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


def hook_count(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) + len(m._backward_pre_hooks)
        for m in model.modules()
    )


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    """A ResNet18 whose batch norms hold non-trivial running statistics, in eval mode."""
    torch.manual_seed(0)
    model = resnet18()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, 3, 32, 32) * 2 + 0.5)
    return model.eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))


# -------------------------------------------------------------------------------------------------------- math


def test_gradcam_map_weights_channels_by_mean_gradient_and_keeps_positive_part():
    a0 = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    a1 = torch.tensor([[4.0, 3.0], [2.0, 1.0]])
    g0 = torch.tensor([[2.0, 0.0], [0.0, 0.0]])  # spatial mean 0.5
    g1 = torch.full((2, 2), -0.25)  # spatial mean -0.25
    activations = torch.stack([a0, a1])[None]
    gradients = torch.stack([g0, g1])[None]
    # 0.5·A0 − 0.25·A1 = [[-0.5, 0.25], [1.0, 1.75]] → ReLU → divided by its max 1.75
    expected = torch.tensor([[0.0, 0.25], [1.0, 1.75]]) / 1.75
    torch.testing.assert_close(gradcam_map(activations, gradients)[0], expected)


def test_gradcam_map_upsamples_to_the_requested_size_and_stays_in_unit_range():
    activations = torch.rand(2, 3, 4, 5)
    gradients = torch.randn(2, 3, 4, 5)
    maps = gradcam_map(activations, gradients, size=(16, 20))
    assert maps.shape == (2, 16, 20)
    assert maps.min() >= 0 and maps.max() <= 1


def test_gradcam_map_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="B×K×h×w"):
        gradcam_map(torch.rand(1, 3, 4, 4), torch.rand(1, 3, 2, 2))


def test_scale_per_image_scales_each_image_alone_and_leaves_flat_maps_zero():
    maps = torch.stack([torch.tensor([[0.0, 1.0], [2.0, 4.0]]), torch.zeros(2, 2), torch.full((2, 2), 3.0)])
    scaled = scale_per_image(maps)
    torch.testing.assert_close(scaled[0], torch.tensor([[0.0, 0.25], [0.5, 1.0]]))
    assert torch.equal(scaled[1], torch.zeros(2, 2)) and torch.equal(scaled[2], torch.zeros(2, 2))
    assert not torch.isnan(scaled).any()


def test_maps_equal_the_closed_form_for_every_target_class_zero_included():
    torch.manual_seed(0)
    model = PoolHead(classes=3).eval()
    x = torch.randn(2, 3, 6, 7)
    activations = F.conv2d(x, model.features.weight, model.features.bias, padding=1)
    h, w = activations.shape[-2:]
    with GradCAM(model, ["features"]) as cam:
        for target in range(3):
            # logit_c = Σ_k W[c, k] · mean(A_k) + b_c, so d logit_c / dA_k = W[c, k] / (h·w) at every position
            weights = model.head.weight[target].detach() / (h * w)
            raw = torch.relu(torch.einsum("k,bkhw->bhw", weights, activations.detach()))
            low = raw.flatten(1).min(1).values[:, None, None]
            high = raw.flatten(1).max(1).values[:, None, None]
            expected = (raw - low) / (high - low)
            result = cam(x, targets=target)
            torch.testing.assert_close(result["features"], expected, atol=1e-6, rtol=1e-5)
            assert result.targets.tolist() == [target, target]


# ----------------------------------------------------------------------------------- the reference implementation


@pytest.mark.parametrize("targets", [None, [0, 3, 9, 0]], ids=["predicted", "given-with-class-0"])
def test_each_layer_agrees_with_the_grad_cam_package_per_image(resnet, images, targets):
    reference = pytest.importorskip(
        "pytorch_grad_cam", reason="the grad-cam package is a test extra: pip install .[test]"
    )
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    with GradCAM(resnet, LAYERS) as cam:
        ours = cam(images, targets)
    classes = ours.targets.tolist()
    assert classes == (ours.predictions.tolist() if targets is None else targets)
    for layer in LAYERS:
        with reference.GradCAM(model=resnet, target_layers=[getattr(resnet, layer)]) as ref:
            theirs = ref(images, targets=[ClassifierOutputTarget(c) for c in classes])  # N×H×W, per-image scaled
        mine = ours[layer].numpy()
        assert mine.shape == theirs.shape == (4, 32, 32)
        for i in range(len(images)):
            assert np.abs(mine[i] - theirs[i]).max() < 1e-4, (layer, i)
            if mine[i].max() > 0:  # a class with no positive evidence gives an all-zero map in both
                assert np.corrcoef(mine[i].ravel(), theirs[i].ravel())[0, 1] > 0.9999, (layer, i)
    assert hook_count(resnet) == 0
    resnet.zero_grad(set_to_none=True)  # the package backpropagates into the parameters' .grad; ours must not


def test_a_batch_gives_the_same_maps_as_one_image_at_a_time(resnet, images):
    targets = [0, 5, 2, 0]
    with GradCAM(resnet, LAYERS) as cam:
        batched = cam(images, targets)
        for i in range(len(images)):
            single = cam(images[i : i + 1], targets[i])
            for layer in LAYERS:
                torch.testing.assert_close(batched[layer][i : i + 1], single[layer], atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(batched.logits[i : i + 1], single.logits, atol=1e-4, rtol=1e-4)


def test_result_is_a_mapping_of_layer_maps_at_input_size_with_the_logits_used(resnet, images):
    with GradCAM(resnet, [resnet.layer4, "layer2"]) as cam:
        result = cam(images)
    assert isinstance(result, CAMResult)
    assert list(result) == ["layer4", "layer2"] and len(result) == 2
    for maps in result.values():
        assert maps.shape == (4, 32, 32) and maps.dtype == torch.float32
        assert maps.min() >= 0 and maps.max() <= 1
        assert torch.allclose(maps.flatten(1).max(1).values, torch.ones(4))  # every image reaches 1 on its own
    with torch.no_grad():
        torch.testing.assert_close(result.logits, resnet(images), atol=1e-5, rtol=1e-5)
    assert torch.equal(result.predictions, result.logits.argmax(1))
    assert torch.equal(result.targets, result.predictions)


# ------------------------------------------------------------------------------------- one pass, no trace left


def test_all_layers_come_from_one_forward_and_one_backward_pass():
    model = TinyNet().eval()
    with GradCAM(model, ["features", "block"]) as cam:
        cam(torch.randn(3, 3, 8, 8))
    assert (model.forwards, model.backwards) == (1, 1)


def test_parameter_grads_are_left_as_they_were(resnet, images):
    params = list(resnet.parameters())
    resnet.zero_grad(set_to_none=True)
    for p in params[::2]:
        p.grad = torch.full_like(p, 0.5)
    try:
        with GradCAM(resnet, LAYERS) as cam:
            cam(images)
        for i, p in enumerate(params):
            if i % 2 == 0:
                assert torch.equal(p.grad, torch.full_like(p, 0.5))
            else:
                assert p.grad is None
    finally:
        for p in params:
            p.grad = None


def test_a_model_in_train_mode_is_evaluated_in_eval_mode_and_every_module_mode_restored(resnet, images):
    with GradCAM(resnet, LAYERS) as cam:
        expected = cam(images)
    resnet.train()
    resnet.layer2.eval()  # a mixed state must come back exactly as it was
    modes = {name: m.training for name, m in resnet.named_modules()}
    running = resnet.bn1.running_mean.clone()
    try:
        with GradCAM(resnet, LAYERS) as cam:
            result = cam(images)
        assert {name: m.training for name, m in resnet.named_modules()} == modes
        assert torch.equal(resnet.bn1.running_mean, running)  # batch norm ran in eval mode: statistics untouched
        for layer in LAYERS:
            torch.testing.assert_close(result[layer], expected[layer])
    finally:
        resnet.eval()


def test_works_when_the_caller_disabled_gradients():
    torch.manual_seed(0)
    model = TinyNet().eval()
    x = torch.randn(2, 3, 8, 8)
    with GradCAM(model, ["features", "block"]) as cam:
        expected = cam(x, 1)
        with torch.no_grad():
            under_no_grad = cam(x, 1)
        with torch.inference_mode():
            under_inference = cam(torch.randn(2, 3, 8, 8).copy_(x), 1)
    for layer in ["features", "block"]:
        torch.testing.assert_close(under_no_grad[layer], expected[layer])
        torch.testing.assert_close(under_inference[layer], expected[layer])


def test_works_on_a_frozen_model_without_touching_requires_grad():
    torch.manual_seed(0)
    model = TinyNet().eval()
    x = torch.randn(2, 3, 8, 8)
    with GradCAM(model, ["features", "block"]) as cam:
        expected = cam(x, 2)
        model.requires_grad_(False)
        frozen = cam(x, 2)
    assert not any(p.requires_grad for p in model.parameters())
    for layer in ["features", "block"]:
        torch.testing.assert_close(frozen[layer], expected[layer])


def test_non_square_inputs_give_maps_at_the_input_size():
    model = TinyNet().eval()
    with GradCAM(model, ["features", "block"]) as cam:
        result = cam(torch.randn(3, 3, 20, 12))
    assert result["features"].shape == result["block"].shape == (3, 20, 12)


def test_no_hooks_remain_after_calls_errors_or_close():
    model = TinyNet().train()
    cam = GradCAM(model, ["features", "block"])
    cam(torch.randn(2, 3, 8, 8))
    assert hook_count(model) == 0
    with pytest.raises(ValueError):
        cam(torch.randn(2, 3, 8, 8), targets=7)  # raises after the forward pass, while hooks were in place
    assert hook_count(model) == 0
    assert all(m.training for m in model.modules())
    cam.close()
    assert hook_count(model) == 0
    with pytest.raises(RuntimeError, match="closed"):
        cam(torch.randn(1, 3, 8, 8))


def test_hooks_are_removed_and_modes_restored_when_the_model_itself_raises():
    class Exploding(TinyNet):
        def forward(self, x):
            self.block(self.features(x))
            raise RuntimeError("boom")

    model = Exploding().train()
    with GradCAM(model, ["features", "block"]) as cam:
        with pytest.raises(RuntimeError, match="boom"):
            cam(torch.randn(2, 3, 8, 8))
    assert hook_count(model) == 0
    assert all(m.training for m in model.modules())


def test_memory_does_not_grow_over_200_calls():
    torch.manual_seed(0)
    model = TinyNet().eval()
    x = torch.randn(2, 3, 8, 8)

    def live_tensors() -> int:
        gc.collect()
        return sum(1 for obj in gc.get_objects() if issubclass(type(obj), torch.Tensor))

    with GradCAM(model, ["features", "block"]) as cam:
        for _ in range(5):
            cam(x)
        before = live_tensors()
        for _ in range(200):
            result = cam(x)
        del result
        after = live_tensors()
    assert after <= before
    assert hook_count(model) == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("tf32, atol", [(False, 2e-3), (True, 0.05)])
def test_cuda_maps_equal_cpu_maps(resnet, images, tf32, atol):
    # With TF32 (PyTorch's default for cuDNN convolutions on Ampere and later) an H100 gave maps up to 0.025 of their
    # range away from the CPU's, where min-max scaling magnifies small activations; in full float32 they agree.
    with GradCAM(resnet, LAYERS) as cam:
        on_cpu = cam(images)
    model = resnet18()
    model.load_state_dict(resnet.state_dict())
    model = model.cuda().eval()
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        with GradCAM(model, LAYERS) as cam:
            on_gpu = cam(images.cuda())
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
    for layer in LAYERS:
        assert on_gpu[layer].is_cuda
        difference = (on_gpu[layer].cpu() - on_cpu[layer]).abs()
        print(f"tf32={tf32} {layer}: max |GPU - CPU| {difference.max():.2e}, mean {difference.mean():.2e}")
        torch.testing.assert_close(on_gpu[layer].cpu(), on_cpu[layer], atol=atol, rtol=0)


# ------------------------------------------------------------------------------------------------- bad inputs


def test_an_unknown_layer_name_is_refused_with_the_choices():
    with pytest.raises(ValueError, match=r"no layer named 'layer9'.*'layer4'"):
        GradCAM(resnet18(), ["layer9"])


def test_a_module_from_another_model_is_refused():
    with pytest.raises(ValueError, match="not part of this model"):
        GradCAM(TinyNet(), [nn.Conv2d(3, 3, 1)])


def test_empty_and_repeated_layer_lists_are_refused():
    with pytest.raises(ValueError, match="at least one layer"):
        GradCAM(TinyNet(), [])
    model = TinyNet()
    with pytest.raises(ValueError, match="listed twice"):
        GradCAM(model, ["block", model.block])


def test_a_layer_without_a_feature_map_is_refused_on_the_first_call_naming_it():
    model = TinyNet()
    with GradCAM(model, ["features", "head"]) as cam:
        with pytest.raises(ValueError, match=r"'head' gives \(2, 3\), not a B×C×h×w feature map.*'features'"):
            cam(torch.randn(2, 3, 8, 8))
    assert hook_count(model) == 0


def test_a_layer_that_does_not_run_is_refused():
    model = TinyNet()
    model.unused = nn.Conv2d(3, 3, 1)
    with GradCAM(model, ["unused"]) as cam:
        with pytest.raises(ValueError, match="'unused' did not run"):
            cam(torch.randn(1, 3, 8, 8))


@pytest.mark.parametrize(
    "targets, message",
    [
        (3, r"\[0, 2\]"),
        (-1, r"\[0, 2\]"),
        ([0, 1, 5], r"\[0, 2\]"),
        ([0, 1], "one target per image"),
        ([[0, 1, 2]], "one target per image"),
        ([0.0, 1.0, 2.0], "integer"),
        (True, "booleans"),
    ],
)
def test_bad_targets_are_refused(targets, message):
    with GradCAM(TinyNet(), ["block"]) as cam:
        with pytest.raises(ValueError, match=message):
            cam(torch.randn(3, 3, 8, 8), targets)


@pytest.mark.parametrize(
    "images",
    [torch.randn(3, 8, 8), torch.zeros(2, 3, 8, 8, dtype=torch.long), torch.randn(0, 3, 8, 8), np.zeros((1, 3, 8, 8))],
    ids=["no-batch-dim", "integer", "empty", "numpy"],
)
def test_bad_images_are_refused(images):
    with GradCAM(TinyNet(), ["block"]) as cam:
        with pytest.raises(ValueError, match="images"):
            cam(images)


# ------------------------------------------------------------------------------------------------------ overlay


def test_overlay_colours_are_rgb_from_the_matplotlib_colormap():
    image = np.full((4, 5, 3), 0.2, dtype=np.float32)
    hot = overlay(image, np.ones((4, 5)), alpha=1.0)
    cold = overlay(image, np.zeros((4, 5)), alpha=1.0)
    jet = matplotlib.colormaps["jet"]
    np.testing.assert_allclose(hot[0, 0], jet(1.0)[:3], atol=1e-6)  # dark red: R high, B zero
    np.testing.assert_allclose(cold[0, 0], jet(0.0)[:3], atol=1e-6)  # dark blue: B high, R zero
    assert hot[0, 0, 0] > 0.4 and hot[0, 0, 2] == 0
    half = overlay(image, np.ones((4, 5)), alpha=0.5)
    np.testing.assert_allclose(half, 0.5 * image + 0.5 * hot, atol=1e-6)
    assert half.shape == (4, 5, 3) and half.dtype == np.float32


def test_overlay_accepts_a_normalized_chw_tensor_and_shows_it_denormalized():
    picture = torch.rand(3, 6, 4)
    normalized = (picture - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
    shown = overlay(normalized, torch.rand(6, 4), alpha=0.0)
    np.testing.assert_allclose(shown, picture.permute(1, 2, 0).numpy(), atol=1e-5)


@pytest.mark.parametrize(
    "image, heatmap, kwargs, message",
    [
        (np.zeros((4, 4, 3)), np.zeros((4, 5)), {}, "like the image"),
        (np.zeros((4, 4, 3)), np.full((4, 4), 1.5), {}, r"\[0, 1\]"),
        (np.zeros((4, 4, 3)), np.zeros((4, 4)), {"alpha": 1.5}, "alpha"),
        (np.zeros((4, 4, 3)), np.zeros((4, 4)), {"colormap": "nope"}, "colormap"),
        (np.zeros((4, 4, 3), dtype=np.uint8), np.zeros((4, 4)), {}, "float"),
        (np.full((4, 4, 3), 2.0), np.zeros((4, 4)), {}, r"\[0, 1\]"),
        (np.zeros((4, 4)), np.zeros((4, 4)), {}, "H×W×3"),
    ],
)
def test_overlay_refuses_bad_inputs(image, heatmap, kwargs, message):
    with pytest.raises(ValueError, match=message):
        overlay(image, heatmap, **kwargs)
