"""``whaled train``: recipes, training windows and augmentation, the training loop,
threshold calibration, cross-validation with nested selection and fine-tuning.
"""
