"""MetaModal: Ray-native multimodal recommendation that stays accurate when modalities go missing."""

__version__ = "0.1.0"
