"""Which pixels made a network call an object a lens: Grad-CAM and occlusion maps, computed by captum.

captum (the PyTorch project's attribution library) works on any ``nn.Module`` and a layer of it, so all our
networks (built from layer lists, or imported from the seed's Keras files) need no adapter; the ``grad-cam``
package would need torchvision, which this project does not install, and expects a class-index output where
ours is one logit. Grad-CAM is taken on the network's last convolution (its coarsest, most semantic map, 4x4
for lens_flow), bilinearly upsampled to the cutout; occlusion (a grey patch slid over the image) is slower but
model-agnostic, for ``lexactum explain``.
"""

from __future__ import annotations

import numpy as np

from lexactum.errors import LexactumError

#: What the report says its overlays are (the contract's saliency_method).
GRAD_CAM = "Grad-CAM (captum LayerGradCam on the last convolution)"
#: Occlusion patch (pixels) and its step: an arc is a few pixels wide, a lens galaxy some ten.
OCCLUSION_WINDOW = 11
OCCLUSION_STRIDE = 5


def last_convolution(network):
    """The network's last ``nn.Conv2d`` (in the order of its modules), which Grad-CAM explains."""
    from torch import nn

    convolutions = [m for m in network.modules() if isinstance(m, nn.Conv2d)]
    if not convolutions:
        raise LexactumError(f"{type(network).__name__} has no convolution, so no Grad-CAM map")
    return convolutions[-1]


def grad_cam(network, images: np.ndarray) -> np.ndarray:
    """(B, H, W) Grad-CAM maps of normalised ``images`` (B, C, H, W) for the network's logit, signed (not yet
    clipped to the positive part), upsampled bilinearly to the images' size. Runs on the CPU."""
    import torch
    from captum.attr import LayerAttribution, LayerGradCam

    network = network.to("cpu").eval()
    inputs = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    with torch.enable_grad():
        maps = LayerGradCam(network, last_convolution(network)).attribute(inputs)
    maps = LayerAttribution.interpolate(maps, tuple(images.shape[-2:]), interpolate_mode="bilinear")
    return maps[:, 0].detach().numpy().astype(np.float32)


def occlusion(network, images: np.ndarray) -> np.ndarray:
    """(B, H, W) occlusion maps: how much the logit drops when a patch of all bands is set to 0 (positive:
    the patch made the object look like a lens), summed over the bands."""
    import torch
    from captum.attr import Occlusion

    network = network.to("cpu").eval()
    inputs = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    channels = images.shape[1]
    with torch.no_grad():
        maps = Occlusion(network).attribute(inputs, sliding_window_shapes=(channels, OCCLUSION_WINDOW,
                                                                           OCCLUSION_WINDOW),
                                            strides=(channels, OCCLUSION_STRIDE, OCCLUSION_STRIDE), baselines=0.0,
                                            perturbations_per_eval=64)
    return maps.sum(dim=1).numpy().astype(np.float32)


def heat(maps: np.ndarray) -> np.ndarray:
    """Maps (B, H, W) as heat in [0, 1]: the positive part, each map divided by its own maximum (a map with
    no positive value is all 0: nothing there argued for a lens)."""
    positive = np.clip(np.nan_to_num(np.asarray(maps, dtype=np.float32)), 0.0, None)
    peak = positive.reshape(len(positive), -1).max(axis=1)
    scale = np.divide(1.0, peak, out=np.zeros_like(peak), where=peak > 0)
    return positive * scale[:, None, None]
