"""blackbox: find near-invisible perturbations that move where a saliency-based cropper crops."""

__version__ = "0.1.0"
