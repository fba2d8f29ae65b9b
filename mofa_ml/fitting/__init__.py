"""Per-image fitting: the start pose (`pose_start`), the base objective as
least squares (`least_squares`) and its Levenberg-Marquardt solve
(`gauss_newton`), the Adam phases (`adam_phase`), the fit of one face that
runs them (`fit`), visibility, and ARKit blendshape weights."""
