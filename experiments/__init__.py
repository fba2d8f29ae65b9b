"""Benchmarks that write docs/results: `python -m experiments.<name>`, from
the repository root (see docs/results.md). Not part of the installed
package; tests import them from the checkout."""
