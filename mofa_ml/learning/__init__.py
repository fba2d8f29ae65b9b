"""What is learned and how: the encoder, corrective spaces, the loss terms,
the objective, two-stage training and the trained regressor."""
