"""Evaluation: metrics, cross-fold aggregation, noise grids and the robustness report."""
