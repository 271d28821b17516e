"""The CAM family (eva9.gradcam.CAM): every method agrees with the grad-cam package, keeps every guarantee of
GradCAM (one pass, no trace on the model, any targets, under no_grad), and finds what it should on a model whose
evidence is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_gradcam import TinyNet, hook_count
from torch import nn

from eva9.gradcam import CAM, METHODS, GradCAM, eigencam_map, randomization_check
from eva9.models import resnet18

pgc = pytest.importorskip("pytorch_grad_cam", reason="the grad-cam package is a test extra: pip install .[test]")
from pytorch_grad_cam.utils.image import scale_cam_image  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection  # noqa: E402

GRADIENT_METHODS = ("gradcam", "gradcam++", "xgradcam", "hirescam", "layercam")
REFERENCE = {
    "gradcam": pgc.GradCAM,
    "gradcam++": pgc.GradCAMPlusPlus,
    "xgradcam": pgc.XGradCAM,
    "hirescam": pgc.HiResCAM,
    "layercam": pgc.LayerCAM,
    "eigencam": pgc.EigenCAM,
    "scorecam": pgc.ScoreCAM,
}
LAYERS = ["layer1", "layer2", "layer3", "layer4"]


def test_methods_names_the_seven_methods_in_order():
    assert METHODS == ("gradcam", "gradcam++", "xgradcam", "hirescam", "layercam", "eigencam", "scorecam")
    assert set(REFERENCE) == set(METHODS)


# ----------------------------------------------------------------------------------- the reference implementation


def _course_random() -> nn.Module:
    torch.manual_seed(0)
    model = resnet18()
    with torch.no_grad():  # non-trivial batch-norm statistics
        for _ in range(3):
            model(torch.randn(8, 3, 32, 32) * 2 + 0.5)
    return model.eval()


def _torchvision_random() -> nn.Module:
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10).eval()


NETWORKS = {
    # name: (model factory, input shape, layers for the fast methods, layers for ScoreCAM (one forward per channel))
    "course-random": (_course_random, (3, 3, 32, 32), LAYERS, ["layer1", "layer2"]),
    "course-published": (lambda: resnet18(weights="seed").eval(), (3, 3, 32, 32), LAYERS, ["layer1", "layer2"]),
    "torchvision-non-square": (_torchvision_random, (2, 3, 64, 96), ["layer2", "layer3", "layer4"], ["layer3"]),
}


@pytest.fixture(scope="module", params=list(NETWORKS))
def network(request):
    factory, shape, layers, score_layers = NETWORKS[request.param]
    images = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    return request.param, factory(), images, layers, score_layers


def _reference(method: str, model: nn.Module, layer: str, images: torch.Tensor, classes: list[int]):
    """grad-cam's map (N×H×W) and the layer's activations that it used."""
    with REFERENCE[method](model=model, target_layers=[model.get_submodule(layer)]) as ref:
        if method == "scorecam":
            ref.batch_size = 128
        maps = ref(images, targets=[ClassifierOutputTarget(c) for c in classes])
        activations = ref.activations_and_grads.activations[0].numpy()
    return maps, activations


@pytest.mark.parametrize("method", METHODS)
def test_every_method_agrees_with_the_grad_cam_package_per_image_and_layer(network, method):
    name, model, images, layers, score_layers = network
    if method == "scorecam":
        layers, images = score_layers, images[:1]
    targets = [0, 3, 9][: len(images)]
    with CAM(model, layers, method) as cam:
        ours = cam(images, targets)
    largest = 0.0
    for layer in layers:
        theirs, activations = _reference(method, model, layer, images, targets)
        if method == "eigencam":
            # grad-cam keeps LAPACK's sign of the principal component; eva9 orients it (see eigencam_map). Where the
            # signs differ, eva9's map is grad-cam's pipeline applied to the negated projection.
            flat = activations.reshape(*activations.shape[:2], -1).transpose(0, 2, 1)
            for i, image in enumerate(flat):
                vt = np.linalg.svd(image - image.mean(axis=0), full_matrices=True)[2]
                if vt[0].sum() < 0:
                    negated = np.maximum(-get_2d_projection(activations[i : i + 1]), 0)
                    theirs[i] = scale_cam_image(negated, (images.shape[-1], images.shape[-2]))[0]
        mine = ours[layer].numpy()
        assert mine.shape == theirs.shape == (len(images), *images.shape[-2:])
        for i in range(len(images)):
            if theirs[i].max() == 0:  # no positive evidence: an empty map in both
                assert mine[i].max() == 0, (name, layer, i)
                continue
            correlation = np.corrcoef(mine[i].ravel(), theirs[i].ravel())[0, 1]
            assert correlation > 0.99, (name, layer, i, correlation)
            # grad-cam scales a map to [0, 1] before resizing it, so a peak between the output's pixels ends below 1;
            # eva9 scales after upsampling (to_input_size), so every map spans [0, 1] at the size it is shown.
            rescaled = (theirs[i] - theirs[i].min()) / (theirs[i].max() - theirs[i].min())
            assert np.abs(mine[i] - rescaled).max() < 1e-4, (name, layer, i)
        largest = max(largest, float(np.abs(mine - theirs).max()))
    print(f"{name} {method}: largest |eva9 - grad-cam| {largest:.2e}")
    assert hook_count(model) == 0
    model.zero_grad(set_to_none=True)  # the package backpropagates into the parameters' .grad; eva9 does not


def test_scorecam_masks_follow_the_references_upsampling():
    # grad-cam upsamples ScoreCAM's masks with align_corners=True; with half-pixel centres the course network's
    # layer2 maps correlated only 0.98 with the reference's, so eva9 follows it (see scorecam_masks).
    from eva9.gradcam import scorecam_masks

    activations = torch.zeros(1, 1, 2, 2)
    activations[0, 0, 0, 0] = 1.0
    masks = scorecam_masks(activations, (3, 3))
    torch.testing.assert_close(masks[0, 0], torch.tensor([[1.0, 0.5, 0.0], [0.5, 0.25, 0.0], [0.0, 0.0, 0.0]]))


# ------------------------------------------------------------------------------- every guarantee, every method


def test_gradcam_is_cam_with_method_gradcam():
    model = _course_random()
    images = torch.randn(2, 3, 32, 32)
    with GradCAM(model, LAYERS) as a, CAM(model, LAYERS, method="gradcam") as b:
        first, second = a(images, [1, 2]), b(images, [1, 2])
    for layer in LAYERS:
        assert torch.equal(first[layer], second[layer])
    assert isinstance(a, CAM) and a.method == "gradcam"
    assert repr(a).startswith("GradCAM(ResNet, layers=") and "method='gradcam'" in repr(b)


def _passes(method: str, batch: int) -> tuple[int, int]:
    if method in GRADIENT_METHODS:
        return 1, 1
    if method == "eigencam":
        return 1, 0
    return 1 + 2 * batch, 0  # ScoreCAM: one batch of masked inputs per image and layer (4 and 5 channels here)


@pytest.mark.parametrize("method", METHODS)
def test_all_layers_come_from_one_forward_and_at_most_one_backward_pass(method):
    model = TinyNet().eval()
    with CAM(model, ["features", "block"], method) as cam:
        result = cam(torch.randn(3, 3, 8, 8))
    assert (model.forwards, model.backwards) == _passes(method, 3)
    for maps in result.values():
        assert maps.shape == (3, 8, 8) and maps.dtype == torch.float32
        assert maps.min() >= 0 and maps.max() <= 1
    assert torch.equal(result.predictions, result.logits.argmax(1))


@pytest.mark.parametrize("method", METHODS)
def test_no_hooks_modes_requires_grad_or_grads_change(method):
    torch.manual_seed(0)
    model = TinyNet().train()
    model.block.eval()  # a mixed state must come back exactly as it was
    modes = {name: m.training for name, m in model.named_modules()}
    running = model.block[1].running_mean.clone()
    params = list(model.parameters())
    for p in params[::2]:
        p.grad = torch.full_like(p, 0.5)
    model.head.requires_grad_(False)
    with CAM(model, ["features", "block"], method) as cam:
        cam(torch.randn(2, 3, 8, 8))
        with pytest.raises(ValueError):
            cam(torch.randn(2, 3, 8, 8), targets=7)  # raises after the forward pass, while the hooks were in place
    assert hook_count(model) == 0
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert torch.equal(model.block[1].running_mean, running)
    assert [p.requires_grad for p in model.parameters()] == [True] * 6 + [False] * 2
    for i, p in enumerate(params):
        assert torch.equal(p.grad, torch.full_like(p, 0.5)) if i % 2 == 0 else p.grad is None


@pytest.mark.parametrize("method", METHODS)
def test_targets_as_int_sequence_or_tensor_under_no_grad_inference_mode_and_frozen(method):
    torch.manual_seed(0)
    model = TinyNet().eval()
    x = torch.randn(2, 3, 8, 8)
    with CAM(model, ["features", "block"], method) as cam:
        expected = cam(x, [1, 1])
        given = {"int": cam(x, 1), "tensor": cam(x, torch.tensor([1, 1]))}
        with torch.no_grad():
            given["no_grad"] = cam(x, 1)
        with torch.inference_mode():
            given["inference_mode"] = cam(torch.randn(2, 3, 8, 8).copy_(x), 1)
        model.requires_grad_(False)
        given["frozen"] = cam(x, 1)
    assert not any(p.requires_grad for p in model.parameters())
    for how, result in given.items():
        assert result.targets.tolist() == [1, 1], how
        for layer in ["features", "block"]:
            torch.testing.assert_close(result[layer], expected[layer], msg=f"{how} {layer}")


@pytest.mark.parametrize("method", METHODS)
def test_randomization_check_runs_for_every_method_and_an_untouched_copy_correlates_exactly(method):
    torch.manual_seed(0)
    model = TinyNet().eval()
    images = torch.randn(4, 3, 8, 8)
    same = randomization_check(model, images, ["features", "block"], randomize=[], method=method)
    for layer, values in same.correlations.items():
        finite = values[values.isfinite()]
        assert len(finite) > 0 and torch.allclose(finite, torch.ones_like(finite)), (layer, values)
    assert hook_count(model) == 0


def test_an_unknown_method_is_refused_with_the_list_of_methods():
    listed = r"unknown CAM method 'gradcam\+'; choose from gradcam, gradcam\+\+, .*scorecam$"
    with pytest.raises(ValueError, match=listed):
        CAM(TinyNet(), ["block"], method="gradcam+")


# ------------------------------------------------------------------------------------------- known answers


class PatchOnly(nn.Module):
    """A 1×1 convolution (identity), then a head that reads only the top-left 3×3 patch: class 0's logit is four
    times the patch's mean, class 1's is zero. On a uniform image every position is equally active."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv2d(1, 1, kernel_size=1, bias=False)
        nn.init.ones_(self.features.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patch = self.features(x)[:, 0, :3, :3].mean(dim=(1, 2))
        return torch.stack([4 * patch, torch.zeros_like(patch)], dim=1)


def test_hirescam_and_layercam_find_exactly_the_patch_where_channel_weights_cannot():
    uniform = torch.ones(2, 1, 8, 8)
    patch = torch.zeros(8, 8)
    patch[:3, :3] = 1.0
    for method in ["hirescam", "layercam"]:
        with CAM(PatchOnly(), "features", method) as cam:
            maps = cam(uniform, 0)["features"]
        assert torch.equal(maps, patch.expand(2, 8, 8)), method
    # GradCAM's one weight per channel spreads the patch's gradient over the whole, uniformly active channel:
    # a constant map, which per-image scaling leaves empty. XGradCAM and GradCAM++ weight channels the same way.
    for method in ["gradcam", "xgradcam", "gradcam++"]:
        with CAM(PatchOnly(), "features", method) as cam:
            assert cam(uniform, 0)["features"].max() == 0, method


def test_eigencam_is_high_where_every_channel_is_active_whatever_the_svd_sign():
    generator = torch.Generator().manual_seed(0)
    activations = 0.05 * torch.rand(3, 6, 5, 5, generator=generator)
    activations[:, :, 1:3, 2:4] += 1.0  # a region where all six channels fire
    region = torch.zeros(5, 5, dtype=torch.bool)
    region[1:3, 2:4] = True
    for order in [torch.arange(6), torch.tensor([5, 3, 1, 0, 2, 4])]:  # a permutation can flip LAPACK's sign
        maps = eigencam_map(activations[:, order])
        assert (maps[:, region].min(dim=1).values > 0.9).all()
        assert (maps[:, ~region].max(dim=1).values < 0.1).all()


def test_before_average_pooling_and_a_linear_layer_gradcam_xgradcam_and_hirescam_are_one_map():
    # layer4 feeds the classifier through global average pooling: d logit / d A[k, i, j] = W[c, k] / (h w) at every
    # position, so GradCAM's mean gradient, XGradCAM's activation-weighted one and HiResCAM's per-position product
    # all weigh channel k by that constant (the GradCAM chapter's curves draw them as one line)
    model = resnet18().eval()
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    maps = {}
    for method in ("gradcam", "xgradcam", "hirescam"):
        with CAM(model, ["layer3", "layer4"], method) as cam:
            maps[method] = cam(images, targets=torch.tensor([0, 3, 7]))
    for method in ("xgradcam", "hirescam"):
        torch.testing.assert_close(maps[method]["layer4"], maps["gradcam"]["layer4"], atol=1e-5, rtol=0)
    assert (maps["hirescam"]["layer3"] - maps["gradcam"]["layer3"]).abs().max() > 0.05  # not so where a block follows
