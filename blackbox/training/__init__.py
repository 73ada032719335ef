"""Training students of a target: the trainable surrogate and DeepGaze II's readout, distilled from a
target's own answers."""
