"""Stage 5, training: the training loop (dense and pruned, distillation), fine-tuning with
schedules (one-shot, iterative, cubic, lottery) and rollback, and the run log."""
