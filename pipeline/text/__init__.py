"""The text-features stage (``shine encode-text``): queries + hard negatives of a run -> a token-feature store.

``encoders``      the text encoders (minilm, clip, word-vectors) returning per-text token features
``stage``         the stage itself: its config, the texts in store order, chunked resumable encoding
``store_writer``  chunk files and the store assembled from them (format: :mod:`shine.text_store_format`)
``flow``          the ``encode-text`` Prefect flow around the stage
``cli``           the ``shine encode-text`` command
"""
