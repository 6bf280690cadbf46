"""Library side of the Kubeflow pipeline: every decision the components make lives here.

The KFP components in ``components/`` only move artifacts in and out and call these functions, so
the logic is unit-tested without KFP and the same code runs locally, in tests and in pods.
"""
