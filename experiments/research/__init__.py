"""One-off probes on synthetic renders (see README.md here):
`python -m experiments.research.<name>`, from the repository root."""
