"""Per-image fitting: the start pose, the Levenberg-Marquardt base solve,
the final-level corrective phase, visibility, and ARKit blendshape weights."""
