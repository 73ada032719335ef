"""Evaluation: white-box against black-box comparison, image selection, reports, the cropper
robustness report and surrogate fidelity."""
