"""Inference: load a trained model from its run directory, batched prediction, device choice.

Used by training (the test pass of the selected epoch), evaluation, prediction and serving alike, so
none of them reaches into another for it. Imports data, models and the leaves, nothing above.
"""
