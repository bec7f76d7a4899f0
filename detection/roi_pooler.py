"""RoI pooling on one feature map: every proposal becomes a fixed ``k x k`` grid of features.

``"pool"`` is Fast R-CNN's RoI max pooling (``torchvision.ops.RoIPool``; ONNX
``MaxRoiPool``): the proposal, scaled by ``spatial_scale`` and rounded to whole cells of
the map, is split into ``k x k`` bins of about equal size and each bin keeps the maximum of
its cells (an empty bin gives 0). ``"align"`` is Mask R-CNN's RoIAlign
(``torchvision.ops.RoIAlign``, 2 x 2 bilinear samples per bin averaged, half-pixel
aligned; ONNX ``RoiAlign``), offered for comparison.
"""

from __future__ import annotations

from torch import Tensor, nn
from torchvision.ops import RoIAlign, RoIPool

ROI_OPS: tuple[str, ...] = ("pool", "align")
ALIGN_SAMPLING_RATIO = 2


class RoIPooler(nn.Module):
    """The ``box_roi_pool`` of torchvision's ``RoIHeads``, on a single named feature map.

    Args:
        feature_name: key of the map in the backbone's output (``"stage3"``).
        output_size: side ``k`` of the pooled grid (7 in the paper).
        spatial_scale: map cells per input pixel, ``1 / stride`` (1/16 for stride 16).
        op: ``"pool"`` (RoI max pooling, the default) or ``"align"``.
    """

    def __init__(
        self, feature_name: str, *, output_size: int = 7, spatial_scale: float, op: str = "pool"
    ) -> None:
        super().__init__()
        if op not in ROI_OPS:
            raise ValueError(f"roi_op={op!r}: use 'pool' (RoIPool, Fast R-CNN) or 'align'")
        if output_size < 1:
            raise ValueError(f"roi output_size={output_size}: must be at least 1 (7 is usual)")
        if not 0 < spatial_scale <= 1:
            raise ValueError(f"spatial_scale={spatial_scale}: expected 1 / stride, e.g. 1/16")
        self.feature_name = feature_name
        self.output_size = output_size
        self.spatial_scale = spatial_scale
        self.op = (
            RoIPool(output_size, spatial_scale)
            if op == "pool"
            else RoIAlign(output_size, spatial_scale, ALIGN_SAMPLING_RATIO, aligned=True)
        )

    def forward(
        self,
        features: dict[str, Tensor],
        proposals: list[Tensor],
        image_shapes: list[tuple[int, int]],
    ) -> Tensor:
        """Pool every proposal of every image from ``features[feature_name]``.

        Args:
            features: maps ``[B, C, H / stride, W / stride]``; only ``feature_name`` is used.
            proposals: per image ``[P_i, 4]`` boxes ``x1, y1, x2, y2`` in input pixels.
            image_shapes: per image ``(height, width)``; unused (the scale is fixed), kept
                for ``RoIHeads``'s call signature.

        Returns:
            ``[sum(P_i), C, k, k]``, the proposals of image 0 first, then image 1, ...
        """
        if self.feature_name not in features:
            raise ValueError(
                f"RoIPooler reads feature map {self.feature_name!r}, but the backbone returned "
                f"{list(features)}"
            )
        return self.op(features[self.feature_name], proposals)
