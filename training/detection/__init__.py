"""Training the YOLO-style face detector: pseudo-labels, synthetic data, targets and loss, the trainer."""
