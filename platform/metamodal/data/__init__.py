"""Data layer: one ``Dataset`` type, real-format loaders, splits, missingness, the synthetic shop."""

from metamodal.data.dataset import Dataset, Interactions
from metamodal.data.load_errors import DataError, LoadReport
from metamodal.data.loaders import FORMATS, dataset_name, detect_format, load_dataset
from metamodal.data.modalities import FeatureModality, ImageModality, Modality, TextModality

__all__ = [
    "FORMATS",
    "DataError",
    "Dataset",
    "FeatureModality",
    "ImageModality",
    "Interactions",
    "LoadReport",
    "Modality",
    "TextModality",
    "dataset_name",
    "detect_format",
    "load_dataset",
]
