"""Stage 7, reporting: the dense-vs-pruned compression report (build and render) and the
resumable AMC-vs-baselines comparison."""
