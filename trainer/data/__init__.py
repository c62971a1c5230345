"""Data loading: annotations, video and text features, the text store, dataset and collate."""

from trainer.data.annotations import Annotation, AnnotationSet, load_annotations, split_by_video, write_annotations
from trainer.data.collate import Batch, Collator, saliency_labels
from trainer.data.dataset import GroundingDataset, GroundingItem, check_features_exist, temporal_endpoint_features
from trainer.data.text_features import (
    TEXT_SOURCES,
    OfficialTextFeatures,
    StoreTextFeatures,
    TextFeatureSource,
    build_text_features,
)
from trainer.data.text_store import VARIANTS, TextStore, TextStoreWriter, write_text_store
from trainer.data.video_features import VIDEO_FORMATS, VideoFeatureReader, l2_normalize

__all__ = [
    "Annotation",
    "AnnotationSet",
    "load_annotations",
    "split_by_video",
    "write_annotations",
    "Batch",
    "Collator",
    "saliency_labels",
    "GroundingDataset",
    "GroundingItem",
    "check_features_exist",
    "temporal_endpoint_features",
    "TEXT_SOURCES",
    "OfficialTextFeatures",
    "StoreTextFeatures",
    "TextFeatureSource",
    "build_text_features",
    "VARIANTS",
    "TextStore",
    "TextStoreWriter",
    "write_text_store",
    "VIDEO_FORMATS",
    "VideoFeatureReader",
    "l2_normalize",
]
