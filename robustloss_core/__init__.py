"""The science of robustloss, importable without Ray. Importing the package registers the datasets, whose
declarations (``datasets.register_dataset``) fill the preset maps every dataset-keyed lookup reads."""
from . import datasets  # noqa: F401  (registers the datasets)
