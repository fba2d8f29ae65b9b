"""Metrics, evaluation over datasets and the reports it writes."""
